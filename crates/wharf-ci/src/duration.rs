//! GitLab's human durations (`start_in`, `timeout`; GitLab parses them with ChronicDuration):
//! "30 seconds", "5 minutes", "1 hour and 30 minutes", "1h 30m", "90 minutes", "1 day",
//! "2 weeks", a bare number of seconds, or `hh:mm:ss`.

use std::time::Duration;

const MINUTE: f64 = 60.0;
const HOUR: f64 = 60.0 * MINUTE;
const DAY: f64 = 24.0 * HOUR;
const WEEK: f64 = 7.0 * DAY;
// ChronicDuration's month and year.
const MONTH: f64 = 30.0 * DAY;
const YEAR: f64 = 365.0 * DAY;

fn unit_seconds(unit: &str) -> Option<f64> {
    Some(match unit {
        "s" | "sec" | "secs" | "second" | "seconds" => 1.0,
        "m" | "min" | "mins" | "minute" | "minutes" => MINUTE,
        "h" | "hr" | "hrs" | "hour" | "hours" => HOUR,
        "d" | "day" | "days" => DAY,
        "w" | "wk" | "wks" | "week" | "weeks" => WEEK,
        "mo" | "mon" | "mos" | "mons" | "month" | "months" => MONTH,
        "y" | "yr" | "yrs" | "year" | "years" => YEAR,
        _ => return None,
    })
}

/// Parse a duration; `Err` says what is wrong.
pub(crate) fn parse(text: &str) -> Result<Duration, String> {
    let lower = text.trim().to_ascii_lowercase();
    if lower.is_empty() {
        return Err("the duration is empty".into());
    }
    if lower.contains(':') {
        return clock(&lower);
    }
    let mut total = 0.0;
    let mut pending: Option<f64> = None;
    let mut rest = lower.as_str();
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == ',');
        if rest.is_empty() {
            break;
        }
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if number_len > 0 {
            if pending.is_some() {
                return Err(format!("`{text}` has a number without a unit"));
            }
            let n: f64 = rest[..number_len]
                .parse()
                .map_err(|_| format!("`{}` is not a number", &rest[..number_len]))?;
            pending = Some(n);
            rest = &rest[number_len..];
            continue;
        }
        let word_len = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        if word_len == 0 {
            // A whole character: the text is the user's, and may be any Unicode.
            let c = rest.chars().next().unwrap_or_default();
            return Err(format!("unexpected `{c}`"));
        }
        let word = &rest[..word_len];
        rest = &rest[word_len..];
        if word == "and" {
            continue;
        }
        let Some(unit) = unit_seconds(word) else {
            return Err(format!("`{word}` is not a unit of time"));
        };
        let Some(n) = pending.take() else {
            return Err(format!("`{word}` has no number before it"));
        };
        total += n * unit;
    }
    // A trailing bare number counts as seconds ("3600", "1 hour 30").
    total += pending.unwrap_or(0.0);
    Duration::try_from_secs_f64(total).map_err(|e| e.to_string())
}

/// `mm:ss` or `hh:mm:ss`.
fn clock(text: &str) -> Result<Duration, String> {
    let parts: Vec<&str> = text.split(':').collect();
    if parts.len() > 3 {
        return Err(format!("`{text}` is not hh:mm:ss"));
    }
    let mut total = 0.0;
    for p in parts {
        let n: f64 = p
            .trim()
            .parse()
            .map_err(|_| format!("`{text}` is not hh:mm:ss"))?;
        total = total * 60.0 + n;
    }
    Duration::try_from_secs_f64(total).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gitlab_forms() {
        let cases = [
            ("30 seconds", 30),
            ("5 minutes", 300),
            ("1 hour and 30 minutes", 5400),
            ("1h 30m", 5400),
            ("1h30m", 5400),
            ("3 hours", 10800),
            ("90 minutes", 5400),
            ("1 day", 86400),
            ("1 week", 604800),
            ("3600", 3600),
            ("10 mins", 600),
            ("2 hrs", 7200),
            ("1:30", 90),
            ("1:00:00", 3600),
            ("1.5 hours", 5400),
            ("1 Hour", 3600),
        ];
        for (text, secs) in cases {
            assert_eq!(parse(text), Ok(Duration::from_secs(secs)), "{text}");
        }
        for bad in ["", "soon", "1 fortnight", "hours", "1 2 minutes"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
