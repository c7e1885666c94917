//! Where the service takes `now` from: the system clock in production, the Klarna double's
//! clock in tests (so a session's 48 hours pass in seconds, end to end).

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hpp_session::Timestamp;

/// How often the double's clock is asked again (between asks it is extrapolated at its speed).
const REFRESH: Duration = Duration::from_millis(100);

/// The clock seam.
#[derive(Debug)]
pub enum Clock {
    /// The system clock.
    System,
    /// The Klarna double's `GET /admin/clock`, cached for a tenth of a second.
    Double {
        /// The endpoint.
        url: String,
        /// An HTTP client.
        http: reqwest::Client,
        /// The last answer: when it came, what it said, the speed.
        last: Mutex<Option<(Instant, Timestamp, f64)>>,
    },
}

/// The double's clock answer.
#[derive(serde::Deserialize)]
struct DoubleNow {
    now: String,
    speed: f64,
}

impl Clock {
    /// The double's clock at `base_url`.
    #[must_use]
    pub fn double(base_url: &str) -> Self {
        Self::Double {
            url: format!("{}/admin/clock", base_url.trim_end_matches('/')),
            http: reqwest::Client::new(),
            last: Mutex::new(None),
        }
    }

    /// The time now.
    ///
    /// # Errors
    /// The double could not be asked (the system clock never fails).
    pub async fn now(&self) -> Result<Timestamp, String> {
        match self {
            Self::System => {
                let since = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_err(|e| e.to_string())?;
                Ok(Timestamp::UNIX_EPOCH.saturating_add(since))
            }
            Self::Double { url, http, last } => {
                let cached = *last.lock().map_err(|e| e.to_string())?;
                if let Some((at, now, speed)) = cached
                    && at.elapsed() < REFRESH
                {
                    return Ok(now.saturating_add(at.elapsed().mul_f64(speed)));
                }
                let asked = Instant::now();
                let answer: DoubleNow = http
                    .get(url)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?
                    .json()
                    .await
                    .map_err(|e| e.to_string())?;
                let now = Timestamp::parse(&answer.now).map_err(|e| e.to_string())?;
                *last.lock().map_err(|e| e.to_string())? = Some((asked, now, answer.speed));
                Ok(now)
            }
        }
    }
}
