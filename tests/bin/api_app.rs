//! A control-plane app whose tasks all finish at once, with varied argument
//! types (integers, floats, booleans, strings, enums, nested objects, lists,
//! options, an internally tagged enum), for schemathesis to fuzz the API
//! without waiting on sleeps.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use taskflow::task;

/// Add two integers (wrapping)
#[task]
fn add(a: i64, b: i64) -> i64 {
    a.wrapping_add(b)
}

/// Repeat a text up to three times
#[task]
fn echo(text: String, times: Option<u8>) -> Vec<String> {
    vec![text; usize::from(times.unwrap_or(1).min(3))]
}

/// A switch and a ratio
#[task]
fn flags(on: bool, ratio: f64) -> Option<f64> {
    on.then_some(ratio)
}

/// Where an order goes.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
struct Address {
    /// Street and number
    street: String,
}

/// How fast.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
enum Speed {
    /// Slowly
    Slow,
    /// Quickly
    Fast,
}

/// One line of an order.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
struct Item {
    /// How many
    quantity: u32,
}

/// Count an order's items, or refuse an empty one
#[task]
fn order(address: Address, speed: Speed, items: Vec<Item>, note: Option<String>) -> Result<u64, String> {
    let _ = (address, speed, note);
    if items.is_empty() {
        return Err("an order needs items".to_owned());
    }
    Ok(items.iter().map(|i| u64::from(i.quantity)).sum())
}

/// How an order is paid: internally tagged, `{"type": "Card", ...}`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(tag = "type")]
enum Payment {
    /// In cash
    Cash {
        /// In cents
        amount: u32,
    },
    /// By card
    Card {
        /// In cents
        amount: u32,
        /// The card number's last four digits
        last4: String,
    },
}

/// Take a payment, returning its amount
#[task]
fn pay(payment: Payment) -> u32 {
    match payment {
        Payment::Cash { amount } | Payment::Card { amount, .. } => amount,
    }
}

fn main() -> taskflow::Result<()> {
    taskflow::App::from_env().run()
}
