//! `--alert-webhook URL`: each alert as a JSON POST in Slack's `{"text": …}` shape, sent
//! by a task of its own from a bounded queue, so a slow, failing or hanging receiver
//! never holds up labeling: a full queue drops the alert (it is in the log anyway).

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Alerts waiting to be sent at most.
const QUEUE: usize = 32;
/// Tries per alert, and the wait before the second (doubled after each failure).
const TRIES: u32 = 4;
const FIRST_WAIT: Duration = Duration::from_millis(250);
/// One try's limit: a receiver that hangs costs this, then the next try.
const TRY_TIMEOUT: Duration = Duration::from_secs(5);

/// The sender: a queue and the task that empties it.
pub struct Webhook {
    tx: mpsc::Sender<String>,
    task: JoinHandle<()>,
}

impl Webhook {
    /// Starts the task on the current runtime. `say` reports what could not be sent.
    pub fn start(url: String, say: impl Fn(&str) + Send + 'static) -> Webhook {
        let (tx, mut rx) = mpsc::channel::<String>(QUEUE);
        let client = reqwest::Client::builder()
            // An alert goes where it was told to go, never where a reply points.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(TRY_TIMEOUT)
            .connect_timeout(TRY_TIMEOUT)
            .build();
        let task = tokio::spawn(async move {
            let client = match client {
                Ok(c) => c,
                Err(e) => return say(&format!("alert webhook: cannot start its client: {e}")),
            };
            while let Some(text) = rx.recv().await {
                if let Err(e) = post(&client, &url, &text).await {
                    say(&crate::keys::mask::scrub(&format!(
                        "alert webhook: not delivered: {e}"
                    )));
                }
            }
        });
        Webhook { tx, task }
    }

    /// A handle to queue alerts from another thread.
    pub fn sender(&self) -> Queue {
        Queue(self.tx.clone())
    }

    /// Lets the queue drain for at most `grace`, then stops the task.
    pub async fn close(self, grace: Duration) {
        let Webhook { tx, mut task } = self;
        drop(tx);
        if tokio::time::timeout(grace, &mut task).await.is_err() {
            task.abort();
        }
    }
}

/// Where alerts are queued.
pub struct Queue(mpsc::Sender<String>);

impl Queue {
    /// Queues `text` (masked), never waiting: with the queue full it is dropped.
    pub fn send(&self, text: &str) {
        let _ = self.0.try_send(crate::keys::mask::scrub(text));
    }
}

/// The body: `{"text": …}`, which Slack, Mattermost, Rocket.Chat and Teams' Slack-style
/// hooks all take.
pub fn body(text: &str) -> String {
    serde_json::json!({ "text": text }).to_string()
}

/// Posts once, retrying a failure that may pass (no answer, 429, 5xx) with back-off.
async fn post(client: &reqwest::Client, url: &str, text: &str) -> Result<(), String> {
    let mut wait = FIRST_WAIT;
    let mut last = String::new();
    for attempt in 1..=TRIES {
        let sent = client
            .post(url)
            .header("content-type", "application/json")
            .body(body(text))
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => {
                let s = r.status();
                last = format!("HTTP {}", s.as_u16());
                if s.is_redirection() {
                    let to = r.headers().get("location").and_then(|l| l.to_str().ok());
                    return Err(format!(
                        "{last} to {} (redirects are not followed)",
                        to.unwrap_or("?")
                    ));
                }
                if s.is_client_error() && s.as_u16() != 429 && s.as_u16() != 408 {
                    return Err(last);
                }
            }
            Err(e) => last = e.without_url().to_string(),
        }
        last = format!("{last} (after {attempt} of {TRIES} tries)");
        if attempt < TRIES {
            tokio::time::sleep(wait).await;
            wait *= 2;
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_is_slack_shaped_json() {
        let b = body("quota \"low\"\nnow");
        let v: serde_json::Value = serde_json::from_str(&b).unwrap();
        assert_eq!(v["text"], "quota \"low\"\nnow");
        assert_eq!(v.as_object().unwrap().len(), 1);
    }
}
