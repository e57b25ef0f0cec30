//! What a Data Custodian notification (a [`BatchList`]) makes Switchyard do.
//!
//! A notification only says "look again": Switchyard never fetches the URIs it lists. Each
//! URI is matched against the stored authorizations; a match starts that authorization's
//! ordinary incremental fetch (its stored `resourceURI`, its tokens, its watermark). A URI
//! is matched only when it lies under `greenbutton.resource_server` and names the
//! authorization's subscription (`.../Subscription/{id}` or below it); anything else is
//! ignored and counted, so a notification cannot make Switchyard send requests (or tokens)
//! to a host of the sender's choosing.
//!
//! Fetches run in the background. While one runs for an authorization, further
//! notifications for it do not start another: they mark it to run once more when the
//! current one ends (the data may have been published after that fetch read its page).

use super::batchlist::BatchList;
use super::connect::{Client, ConnectError};
use reqwest::Url;
use serde::Serialize;
use sqlx::Row;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

/// What one notification did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NotifyOutcome {
    /// Authorizations whose fetch was started.
    pub fetching: Vec<String>,
    /// Authorizations already being fetched: fetched once more after the running one.
    pub queued: Vec<String>,
    /// Resource URIs that match no authorization under the resource server (not fetched).
    pub ignored: usize,
}

/// Starts and coalesces the fetches notifications ask for.
#[derive(Clone)]
pub struct Notifier {
    client: Arc<Client>,
    /// Authorizations being fetched, and whether another round was asked for meanwhile.
    running: Arc<Mutex<HashMap<String, bool>>>,
}

/// The subscription an authorization's resourceURI names: origin, the path up to and
/// including `Subscription/{id}`.
fn subscription_key(uri: &Url) -> Option<String> {
    let segs: Vec<&str> = uri.path_segments()?.collect();
    let i = segs.iter().position(|s| *s == "Subscription")?;
    let id = segs.get(i + 1).filter(|s| !s.is_empty())?;
    Some(format!("Subscription/{id}"))
}

/// Whether `uri` lies under `base` (same scheme, host and port; path below base's path).
fn under(uri: &Url, base: &Url) -> bool {
    let prefix = base.path().trim_end_matches('/');
    uri.origin() == base.origin()
        && uri
            .path()
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

impl Notifier {
    pub fn new(client: Arc<Client>) -> Notifier {
        Notifier {
            client,
            running: Arc::default(),
        }
    }

    /// The authorizations `list` concerns, and how many of its URIs concern none.
    pub async fn matching(
        &self,
        list: &BatchList,
    ) -> Result<(BTreeSet<String>, usize), ConnectError> {
        let base = Url::parse(self.client.config().resource_server.trim_end_matches('/'))
            .map_err(|e| ConnectError::Config(format!("greenbutton.resource_server: {e}")))?;
        let rows = sqlx::query("SELECT name, resource_uri FROM greenbutton_authorizations")
            .fetch_all(self.client.store().pool())
            .await?;
        let mut subs: Vec<(String, String)> = Vec::new();
        for r in rows {
            let name: String = r.try_get("name")?;
            let uri: String = r.try_get("resource_uri")?;
            if let Some(key) = Url::parse(&uri)
                .ok()
                .filter(|u| under(u, &base))
                .and_then(|u| subscription_key(&u))
            {
                subs.push((key, name));
            }
        }
        let mut names = BTreeSet::new();
        let mut ignored = 0;
        for r in &list.resources {
            let found: Vec<&String> = match Url::parse(r) {
                Ok(u) if under(&u, &base) => match subscription_key(&u) {
                    Some(k) => subs
                        .iter()
                        .filter(|(s, _)| *s == k)
                        .map(|(_, n)| n)
                        .collect(),
                    None => Vec::new(),
                },
                _ => Vec::new(),
            };
            if found.is_empty() {
                ignored += 1;
                tracing::warn!(resource = %r, "Green Button notification for no stored authorization under the resource server; ignored");
            }
            names.extend(found.into_iter().cloned());
        }
        Ok((names, ignored))
    }

    /// Starts (or queues) the fetches `list` asks for and returns at once.
    pub async fn notify(&self, list: &BatchList) -> Result<NotifyOutcome, ConnectError> {
        let (names, ignored) = self.matching(list).await?;
        let mut out = NotifyOutcome {
            ignored,
            ..Default::default()
        };
        for name in names {
            if self.trigger(&name) {
                out.fetching.push(name);
            } else {
                out.queued.push(name);
            }
        }
        Ok(out)
    }

    /// Whether a fetch of `name` is running.
    pub fn is_fetching(&self, name: &str) -> bool {
        self.running
            .lock()
            .expect("notifier lock")
            .contains_key(name)
    }

    /// Starts a background fetch of `name` unless one runs (then marks it for one more
    /// round); true when started.
    fn trigger(&self, name: &str) -> bool {
        {
            let mut running = self.running.lock().expect("notifier lock");
            if let Some(again) = running.get_mut(name) {
                *again = true;
                return false;
            }
            running.insert(name.to_string(), false);
        }
        let this = self.clone();
        let name = name.to_string();
        tokio::spawn(async move {
            loop {
                match this.client.fetch(&name).await {
                    Ok(r) => {
                        tracing::info!(%name, inserted = r.outcome.inserted, entries = r.entries, "Green Button fetch after notification done")
                    }
                    Err(error) => {
                        tracing::warn!(%name, %error, "Green Button fetch after notification failed")
                    }
                }
                let mut running = this.running.lock().expect("notifier lock");
                if running.get(&name).copied().unwrap_or(false) {
                    running.insert(name.clone(), false);
                } else {
                    running.remove(&name);
                    break;
                }
            }
        });
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_uris_under_the_base_and_naming_a_subscription_match() {
        let base = Url::parse("https://dc.example/DataCustodian").unwrap();
        let ok =
            Url::parse("https://dc.example/DataCustodian/espi/1_1/resource/Batch/Subscription/5")
                .unwrap();
        assert!(under(&ok, &base));
        assert_eq!(subscription_key(&ok).as_deref(), Some("Subscription/5"));
        let below = Url::parse(
            "https://dc.example/DataCustodian/espi/1_1/resource/Subscription/5/UsagePoint/1",
        )
        .unwrap();
        assert_eq!(subscription_key(&below).as_deref(), Some("Subscription/5"));
        for foreign in [
            "https://evil.example/DataCustodian/espi/1_1/resource/Batch/Subscription/5",
            "http://dc.example/DataCustodian/espi/1_1/resource/Batch/Subscription/5",
            "https://dc.example:8443/DataCustodian/espi/1_1/resource/Batch/Subscription/5",
            "https://dc.example/DataCustodianX/espi/1_1/resource/Batch/Subscription/5",
        ] {
            assert!(!under(&Url::parse(foreign).unwrap(), &base), "{foreign}");
        }
        let none =
            Url::parse("https://dc.example/DataCustodian/espi/1_1/resource/Batch/Bulk/1").unwrap();
        assert_eq!(subscription_key(&none), None);
    }
}
