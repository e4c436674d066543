//! A control-plane app with one task whose argument takes every shape the
//! generated form offers: an enum with data beside a unit variant, an
//! internally tagged enum, a list of structs, a list of strings, a map, a
//! unit struct and an optional struct, for the browser test of forms; and
//! one plain string, to paste too much into.

use std::collections::HashMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use taskflow::task;

/// How the order reaches the customer.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
enum Delivery {
    /// Collected at the shop
    Pickup,
    /// Brought by a courier
    Courier {
        /// The delivery zone
        zone: String,
        /// Within the hour
        express: bool,
    },
}

/// How the order is paid.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(tag = "type")]
enum Payment {
    /// In cash, on delivery
    Cash,
    /// By card
    Card {
        /// The card number's last four digits
        #[schemars(length(min = 4, max = 4))]
        last4: String,
    },
}

/// One line of the order.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
struct Line {
    /// What is ordered
    sku: String,
    /// How many
    quantity: u32,
}

/// A gift message.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
struct Gift {
    /// The card's text
    message: String,
}

/// Nothing to fill in: a unit struct, sent as `null`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
struct Confirmed;

/// Place an order, returning how many items it has
///
/// # Arguments
/// * `delivery` - how it arrives
/// * `payment` - how it is paid
/// * `lines` - what is ordered
/// * `tags` - labels for the packer
/// * `headers` - extra metadata
/// * `confirmed` - a marker
/// * `gift` - a gift message, if it is one
#[task]
fn place_order(
    delivery: Delivery,
    payment: Payment,
    lines: Vec<Line>,
    tags: Vec<String>,
    headers: HashMap<String, String>,
    confirmed: Confirmed,
    gift: Option<Gift>,
) -> u64 {
    let _ = (delivery, payment, tags, headers, confirmed, gift);
    lines.iter().map(|l| u64::from(l.quantity)).sum()
}

/// Keep a note, returning its length in bytes
///
/// # Arguments
/// * `note` - the text
#[task]
fn keep_note(note: String) -> usize {
    note.len()
}

fn main() -> taskflow::Result<()> {
    taskflow::App::from_env().run()
}
