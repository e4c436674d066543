//! `worker-token create`: a one-time provision token with which a remote
//! worker registers (`POST /api/v1/polling/register`).

use std::time::Duration;

use super::error::{Error, Result};
use super::{StoreArgs, open_store, runtime};

/// A time to live as people write it: `90s`, `15m`, `1h`, `7d`.
pub(super) fn parse_ttl(text: &str) -> std::result::Result<Duration, String> {
    let unit_at = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(unit_at);
    let seconds = match unit {
        "s" | "" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => 0,
    };
    match number.parse::<u64>() {
        Ok(n) if n > 0 && seconds > 0 => Ok(Duration::from_secs(n.saturating_mul(seconds))),
        _ => Err(format!("`{text}` is not a time to live: write a positive whole number of s, m, h or d, e.g. `1h`")),
    }
}

/// Stores a provision token for a worker called `name` and prints it.
pub(super) fn create_token(program: &str, store_args: &StoreArgs, name: &str, ttl: Duration) -> Result<()> {
    let token = runtime()?.block_on(async {
        let (store, _) = open_store(store_args).await?;
        create(&*store, name, ttl).await
    })?;
    println!("{token}");
    eprintln!(
        "a provision token for the worker `{name}`: good for one registration within {}s; it is shown only now. \
         A worker registers with it at POST /api/v1/polling/register (`{program}` serves that route).",
        ttl.as_secs()
    );
    Ok(())
}

#[cfg(feature = "web")]
async fn create(store: &dyn crate::store::Store, name: &str, ttl: Duration) -> Result<String> {
    use taskflow_web::polling::ProvisionError;
    taskflow_web::polling::create_provision_token(store, name, ttl).await.map_err(|error| match error {
        ProvisionError::Store(error) => Error::Store(error),
        other => Error::Usage(other.to_string()),
    })
}

#[cfg(not(feature = "web"))]
async fn create(_: &dyn crate::store::Store, _: &str, _: Duration) -> Result<String> {
    Err(Error::Usage(
        "this binary was built without taskflow's `web` feature, so it has no control plane for workers to register with"
            .to_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_to_live_read_as_people_write_them() {
        assert_eq!(parse_ttl("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_ttl("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_ttl("1h"), Ok(Duration::from_secs(3_600)));
        assert_eq!(parse_ttl("7d"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse_ttl("30"), Ok(Duration::from_secs(30)));
        for bad in ["0h", "h", "1w", "-1h", "1.5h", ""] {
            assert!(parse_ttl(bad).unwrap_err().contains("is not a time to live"), "{bad}");
        }
    }
}
