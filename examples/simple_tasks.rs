//! The tasks of TaskFlow's original demo, plus one that takes the user's own
//! types. `cargo run --example simple_tasks -- call add_numbers --a 2 --b 3`.

use std::collections::HashMap;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use taskflow::{TaskContext, task};

/// Add two numbers together
///
/// # Arguments
/// * `a` - the first addend
/// * `b` - the second addend
#[task(tags = ["math"])]
pub fn add_numbers(a: i64, b: i64) -> i64 {
    println!("adding {a} and {b}"); // printed output goes to stderr, never into the result
    a + b
}

/// Multiply two numbers
///
/// # Arguments
/// * `a` - the multiplicand
/// * `b` - the multiplier
#[task(tags = ["math"], defaults(b = 2.0))]
pub fn multiply_numbers(a: f64, b: f64) -> f64 {
    a * b
}

/// Fail on purpose, to see how a failed run looks
#[task(retries = 0)]
pub fn raise_exception() -> Result<(), String> {
    Err("This is a test exception".to_owned())
}

/// Do nothing for a while
///
/// # Arguments
/// * `seconds` - how long to sleep
#[task(timeout = "1m")]
pub async fn sleep_for_seconds(ctx: &TaskContext, seconds: u64) -> String {
    ctx.info(format!("sleeping for {seconds}s"));
    for second in 0..seconds {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = ctx.cancelled() => return format!("woken after {second}s"),
        }
        ctx.progress(second + 1, seconds);
    }
    "great nap!".to_owned()
}

/// Where an order goes.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
pub struct Address {
    /// Street and number
    pub street: String,
    /// City
    pub city: String,
}

/// How fast an order ships.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Shipping {
    /// Within a week
    Standard,
    /// Next day
    Express,
}

/// One line of an order.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
pub struct Item {
    /// What is ordered
    pub sku: String,
    /// How many
    pub quantity: u32,
    /// Price of one, in cents
    pub unit_price_cents: u64,
}

/// The priced order.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Quote {
    /// Sum of the items and shipping, in cents
    pub total_cents: u64,
    /// Number of items
    pub items: u32,
    /// Where it goes, on one line
    pub ship_to: String,
    /// The note, if any
    pub note: Option<String>,
}

/// Price an order: items, shipping and an optional note
///
/// # Arguments
/// * `address` - where the order goes
/// * `shipping` - how fast it ships
/// * `items` - what is ordered
/// * `note` - a message for the packer
/// * `discounts` - percent off per SKU
#[task(tags = ["shop"], defaults(shipping = "standard"))]
pub fn quote_order(
    ctx: &TaskContext,
    address: Address,
    shipping: Shipping,
    items: Vec<Item>,
    note: Option<String>,
    discounts: Option<HashMap<String, u8>>,
) -> Result<Quote, String> {
    if items.is_empty() {
        return Err("an order needs at least one item".to_owned());
    }
    let discounts = discounts.unwrap_or_default();
    let mut total: u64 = 0;
    for item in &items {
        let off = u64::from(discounts.get(&item.sku).copied().unwrap_or(0).min(100));
        let line = item.unit_price_cents * u64::from(item.quantity) * (100 - off) / 100;
        ctx.info(format!("{} x {} = {line} cents", item.quantity, item.sku));
        total += line;
    }
    total += match shipping {
        Shipping::Standard => 500,
        Shipping::Express => 1500,
    };
    Ok(Quote {
        total_cents: total,
        items: items.iter().map(|i| i.quantity).sum(),
        ship_to: format!("{}, {}", address.street, address.city),
        note,
    })
}

fn main() -> taskflow::Result<()> {
    taskflow::App::from_env().run()
}
