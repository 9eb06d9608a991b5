//! The text .NET makes of values, where a projection's key depends on it: Runtime 8 keyed
//! states by an event's occurred time formatted with a .NET date format (invariant culture,
//! UTC, milliseconds), and by a content property as .NET prints it (Newtonsoft's parse, then
//! `ToString()`). A head that moves from Runtime 8 finds its states under the same keys.
//!
//! Dates: the standard one-letter formats of a `DateTimeOffset` and the custom specifiers.
//! A format is invalid where .NET throws: an empty format, an unknown one-letter format, an
//! unterminated quote, a trailing `\` or `%`, `%%`, more than seven `f` or `F`.

use std::fmt::Write as _;

/// Why a format is invalid: the text of the .NET exception.
pub const FORMAT_ERROR: &str = "System.FormatException: Input string was not in a correct format.";

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// A UTC time broken into fields.
#[derive(Debug, Clone, Copy)]
struct Parts {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    /// Ticks (100 ns) within the second; Runtime 8 kept milliseconds.
    ticks: u32,
    weekday: usize,
}

impl Parts {
    fn of(unix_ns: i64) -> Parts {
        let secs = unix_ns.div_euclid(1_000_000_000);
        let ns = unix_ns.rem_euclid(1_000_000_000);
        let days = secs.div_euclid(86_400);
        let in_day = secs.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        Parts {
            year,
            month,
            day,
            hour: u32::try_from(in_day / 3600).unwrap_or(0),
            minute: u32::try_from(in_day / 60 % 60).unwrap_or(0),
            second: u32::try_from(in_day % 60).unwrap_or(0),
            // Milliseconds, as Runtime 8 stored them, in ticks.
            ticks: u32::try_from(ns / 1_000_000 * 10_000).unwrap_or(0),
            // 1970-01-01 was a Thursday.
            weekday: usize::try_from((days + 4).rem_euclid(7)).unwrap_or(0),
        }
    }
}

/// Howard Hinnant's days-to-civil: (year, month, day) of days since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let month = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The custom pattern of a one-letter standard format (a `DateTimeOffset`, invariant
/// culture); `None` for a letter .NET refuses.
fn standard(letter: char) -> Option<&'static str> {
    Some(match letter {
        'd' => "MM/dd/yyyy",
        'D' => "dddd, dd MMMM yyyy",
        'f' => "dddd, dd MMMM yyyy HH:mm",
        'F' => "dddd, dd MMMM yyyy HH:mm:ss",
        'g' => "MM/dd/yyyy HH:mm",
        'G' => "MM/dd/yyyy HH:mm:ss",
        'm' | 'M' => "MMMM dd",
        'o' | 'O' => "yyyy'-'MM'-'dd'T'HH':'mm':'ss'.'fffffffzzz",
        'r' | 'R' => "ddd, dd MMM yyyy HH':'mm':'ss 'GMT'",
        's' => "yyyy'-'MM'-'dd'T'HH':'mm':'ss",
        't' => "HH:mm",
        'T' => "HH:mm:ss",
        'u' => "yyyy'-'MM'-'dd HH':'mm':'ss'Z'",
        'y' | 'Y' => "yyyy MMMM",
        _ => return None,
    })
}

/// Formats the UTC time `unix_ns` as .NET formats a `DateTimeOffset` at offset zero with
/// `format` and the invariant culture; `Err` with the exception's text where .NET throws.
pub fn format_time(unix_ns: i64, format: &str) -> Result<String, String> {
    let mut letters = format.chars();
    let pattern = match (letters.next(), letters.next()) {
        (None, _) => return Err(FORMAT_ERROR.to_owned()),
        (Some(letter), None) => standard(letter).ok_or_else(|| FORMAT_ERROR.to_owned())?,
        _ => format,
    };
    custom(Parts::of(unix_ns), pattern)
}

/// How many times `c` repeats from `at` on.
fn run_of(chars: &[char], at: usize, c: char) -> usize {
    chars[at..].iter().take_while(|&&x| x == c).count()
}

fn custom(time: Parts, pattern: &str) -> Result<String, String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::new();
    let mut at = 0;
    while at < chars.len() {
        let ch = chars[at];
        let run = run_of(&chars, at, ch);
        let mut used = run;
        match ch {
            'y' => {
                let year = time.year;
                if run <= 2 {
                    let short = year.rem_euclid(100);
                    if run == 1 {
                        let _ = write!(out, "{short}");
                    } else {
                        let _ = write!(out, "{short:02}");
                    }
                } else {
                    let _ = write!(out, "{year:0run$}");
                }
            }
            'M' => match run {
                1 => {
                    let _ = write!(out, "{}", time.month);
                }
                2 => {
                    let _ = write!(out, "{:02}", time.month);
                }
                3 => out.push_str(&MONTHS[time.month as usize - 1][..3]),
                _ => out.push_str(MONTHS[time.month as usize - 1]),
            },
            'd' => match run {
                1 => {
                    let _ = write!(out, "{}", time.day);
                }
                2 => {
                    let _ = write!(out, "{:02}", time.day);
                }
                3 => out.push_str(&DAYS[time.weekday][..3]),
                _ => out.push_str(DAYS[time.weekday]),
            },
            'h' => two(
                &mut out,
                if time.hour.is_multiple_of(12) {
                    12
                } else {
                    time.hour % 12
                },
                run,
            ),
            'H' => two(&mut out, time.hour, run),
            'm' => two(&mut out, time.minute, run),
            's' => two(&mut out, time.second, run),
            'f' | 'F' => {
                if run > 7 {
                    return Err(FORMAT_ERROR.to_owned());
                }
                let digits = format!("{:07}", time.ticks);
                let digits = &digits[..run];
                if ch == 'f' {
                    out.push_str(digits);
                } else {
                    let trimmed = digits.trim_end_matches('0');
                    if trimmed.is_empty() {
                        // .NET drops the point before an empty `F` too.
                        if out.ends_with('.') {
                            out.pop();
                        }
                    } else {
                        out.push_str(trimmed);
                    }
                }
            }
            't' => {
                let designator = if time.hour < 12 { "AM" } else { "PM" };
                out.push_str(if run == 1 {
                    &designator[..1]
                } else {
                    designator
                });
            }
            'z' => out.push_str(match run {
                1 => "+0",
                2 => "+00",
                _ => "+00:00",
            }),
            'K' => {
                used = 1;
                out.push_str("+00:00");
            }
            'g' => out.push_str("A.D."),
            ':' | '/' => {
                used = 1;
                out.push(ch);
            }
            '\'' | '"' => {
                let end = chars[at + 1..]
                    .iter()
                    .position(|&x| x == ch)
                    .ok_or_else(|| {
                        format!(
                            "System.FormatException: Cannot find a matching quote character \
                             for the character '{ch}'."
                        )
                    })?;
                let mut j = at + 1;
                while j < at + 1 + end {
                    // A backslash inside quotes escapes the next character.
                    if chars[j] == '\\' {
                        j += 1;
                        if j >= chars.len() {
                            return Err(FORMAT_ERROR.to_owned());
                        }
                    }
                    out.push(chars[j]);
                    j += 1;
                }
                used = end + 2;
            }
            '\\' => {
                let next = chars.get(at + 1).ok_or_else(|| FORMAT_ERROR.to_owned())?;
                out.push(*next);
                used = 2;
            }
            '%' => {
                let next = chars.get(at + 1).ok_or_else(|| FORMAT_ERROR.to_owned())?;
                if *next == '%' {
                    return Err(FORMAT_ERROR.to_owned());
                }
                // `%x` is one custom specifier, never a standard format.
                out.push_str(&custom(time, &next.to_string())?);
                used = 2;
            }
            other => {
                used = 1;
                out.push(other);
            }
        }
        at += used;
    }
    Ok(out)
}

/// `value` in two digits when the specifier repeats, else as few as it needs.
fn two(out: &mut String, value: u32, n: usize) {
    if n == 1 {
        let _ = write!(out, "{value}");
    } else {
        let _ = write!(out, "{value:02}");
    }
}

/// The key text of a JSON value as Runtime 8 made it (Newtonsoft's token, `ToString()`):
/// strings without quotes (an ISO 8601 date-time parsed as a date and printed as
/// `MM/dd/yyyy HH:mm:ss`, as Newtonsoft's default date handling did), integers in decimal,
/// other numbers as .NET prints a double, `True`/`False`, an empty text for null, objects
/// and arrays as indented JSON. `raw` is the value's JSON text, already valid.
pub fn json_value_text(raw: &str) -> String {
    let raw = raw.trim();
    match raw.as_bytes().first() {
        Some(b'"') => {
            let text: String = serde_json::from_str(raw).unwrap_or_default();
            iso_date_text(&text).unwrap_or(text)
        }
        Some(b't') => "True".to_owned(),
        Some(b'f') => "False".to_owned(),
        Some(b'n') => String::new(),
        Some(b'{' | b'[') => indented(raw),
        _ => number_text(raw),
    }
}

/// An integer as written (a JSON integer cannot have leading zeros; `-0` is 0), any other
/// number as .NET prints the double it parses to.
fn number_text(raw: &str) -> String {
    if !raw.contains(['.', 'e', 'E']) {
        return if raw == "-0" {
            "0".to_owned()
        } else {
            raw.to_owned()
        };
    }
    match raw.parse::<f64>() {
        Ok(value) => double_text(value),
        Err(_) => raw.to_owned(),
    }
}

/// A double as .NET Core prints it: the shortest text that reads back the same, in
/// scientific notation (`1E+20`, `1E-05`) when its exponent is 15 or more or -5 or less.
pub fn double_text(value: f64) -> String {
    if value == 0.0 {
        return if value.is_sign_negative() { "-0" } else { "0" }.to_owned();
    }
    if !value.is_finite() {
        return if value.is_nan() {
            "NaN".to_owned()
        } else if value > 0.0 {
            "\u{221e}".to_owned()
        } else {
            "-\u{221e}".to_owned()
        };
    }
    // Rust's `{:e}` is the shortest round-trip digits: "d.ddde[-]x".
    let scientific = format!("{value:e}");
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let sign = if negative { "-" } else { "" };
    if !(-4..15).contains(&exponent) {
        let (first, rest) = digits.split_at(1);
        let point = if rest.is_empty() { "" } else { "." };
        let exp_sign = if exponent < 0 { '-' } else { '+' };
        return format!("{sign}{first}{point}{rest}E{exp_sign}{:02}", exponent.abs());
    }
    let count = i32::try_from(digits.len()).unwrap_or(i32::MAX);
    if exponent < 0 {
        let zeros = "0".repeat(usize::try_from(-exponent - 1).unwrap_or(0));
        format!("{sign}0.{zeros}{digits}")
    } else if exponent + 1 >= count {
        let zeros = "0".repeat(usize::try_from(exponent + 1 - count).unwrap_or(0));
        format!("{sign}{digits}{zeros}")
    } else {
        let (int, frac) = digits.split_at(usize::try_from(exponent + 1).unwrap_or(0));
        format!("{sign}{int}.{frac}")
    }
}

/// A string Newtonsoft reads as a date (`yyyy-MM-ddTHH:mm:ss`, a fraction, and `Z` or an
/// offset), printed as .NET prints the `DateTime` (`MM/dd/yyyy HH:mm:ss`, an offset turned
/// into the runtime's local time, UTC here).
fn iso_date_text(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = text.get(range)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let mut rest = &text[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let n = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 || n > 7 {
            return None;
        }
        rest = &fraction[n..];
    }
    let offset_minutes = match rest {
        "" | "Z" => 0,
        _ => {
            let (sign, zone) = match rest.as_bytes()[0] {
                b'+' => (1, &rest[1..]),
                b'-' => (-1, &rest[1..]),
                _ => return None,
            };
            let (h, m) = match zone.len() {
                2 => (zone, "00"),
                4 => (&zone[..2], &zone[2..]),
                5 if zone.as_bytes()[2] == b':' => (&zone[..2], &zone[3..]),
                _ => return None,
            };
            let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
            if h > 14 || m > 59 {
                return None;
            }
            sign * (h * 60 + m)
        }
    };
    let days = days_from_civil(year, month, day);
    let local =
        (days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60) * 1_000_000_000;
    let t = Parts::of(local);
    Some(format!(
        "{:02}/{:02}/{:04} {:02}:{:02}:{:02}",
        t.month, t.day, t.year, t.hour, t.minute, t.second
    ))
}

/// The days in a month of the proleptic Gregorian calendar.
pub fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a civil date (the inverse of [`civil_from_days`]).
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Valid JSON text re-indented as Newtonsoft's `ToString()` writes it: two spaces, `": "`
/// after a name, each member and element on its own line, empty containers as `{}` / `[]`.
fn indented(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len() * 2);
    let mut depth = 0usize;
    let mut i = 0;
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        out.push_str(&"  ".repeat(depth));
    };
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b'"' => {
                let start = i;
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    if bytes[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                out.push_str(&raw[start..=i.min(bytes.len() - 1)]);
            }
            b'{' | b'[' => {
                let close = if c == b'{' { b'}' } else { b']' };
                let next = bytes[i + 1..].iter().position(|b| !b.is_ascii_whitespace());
                if next.is_some_and(|n| bytes[i + 1 + n] == close) {
                    out.push(char::from(c));
                    out.push(char::from(close));
                    i += 1 + next.unwrap_or(0);
                } else {
                    out.push(char::from(c));
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(char::from(c));
            }
            b',' => {
                out.push(',');
                newline(&mut out, depth);
            }
            b':' => out.push_str(": "),
            c if c.is_ascii_whitespace() => {}
            _ => {
                let start = i;
                while i + 1 < bytes.len()
                    && !matches!(bytes[i + 1], b',' | b'}' | b']' | b':')
                    && !bytes[i + 1].is_ascii_whitespace()
                {
                    i += 1;
                }
                out.push_str(&raw[start..=i]);
            }
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2020-05-01T14:32:07.123Z.
    const AT: i64 = 1_588_343_527_123_000_000;

    #[test]
    fn dates_format_as_dotnet_formats_them() {
        for (format, want) in [
            ("yyyy", "2020"),
            ("yyyy-MM", "2020-05"),
            ("yyyy-MM-dd", "2020-05-01"),
            ("hh:mm", "02:32"),
            ("HH:mm:ss", "14:32:07"),
            ("HH:mm:ss.fff", "14:32:07.123"),
            ("ss.FFFFF", "07.123"),
            ("ss.ffff", "07.1230"),
            ("d", "05/01/2020"),
            ("D", "Friday, 01 May 2020"),
            ("o", "2020-05-01T14:32:07.1230000+00:00"),
            ("r", "Fri, 01 May 2020 14:32:07 GMT"),
            ("s", "2020-05-01T14:32:07"),
            ("u", "2020-05-01 14:32:07Z"),
            ("y", "2020 May"),
            ("M/d/yy h:m tt", "5/1/20 2:32 PM"),
            ("MMM ddd zzz K", "May Fri +00:00 +00:00"),
            ("'week' yyyy", "week 2020"),
            ("\\y yyyy", "y 2020"),
            ("%d", "1"),
        ] {
            assert_eq!(format_time(AT, format).unwrap(), want, "format {format:?}");
        }
        assert_eq!(format_time(0, "ss.FFF").unwrap(), "00");
    }

    #[test]
    fn formats_dotnet_refuses_are_refused() {
        for format in [
            "", "x", "U", "%", "\\", "'open", "yyyy\\", "ffffffff", "a%%",
        ] {
            assert!(format_time(AT, format).is_err(), "format {format:?}");
        }
    }

    #[test]
    fn json_values_read_as_newtonsoft_prints_them() {
        for (raw, want) in [
            ("\"cart-1\"", "cart-1"),
            ("\"2021-03-04T05:06:07Z\"", "03/04/2021 05:06:07"),
            ("\"2021-03-04T05:06:07.5+02:00\"", "03/04/2021 03:06:07"),
            ("\"2021-03-04\"", "2021-03-04"),
            ("41", "41"),
            ("-3", "-3"),
            (
                "123456789012345678901234567890",
                "123456789012345678901234567890",
            ),
            ("1.5", "1.5"),
            ("1.0", "1"),
            ("1e20", "1E+20"),
            ("0.0001", "0.0001"),
            ("0.00001", "1E-05"),
            ("123456789012345.0", "123456789012345"),
            ("true", "True"),
            ("false", "False"),
            ("null", ""),
            (
                "{\"a\":1,\"b\":[1, 2],\"c\":{}}",
                "{\n  \"a\": 1,\n  \"b\": [\n    1,\n    2\n  ],\n  \"c\": {}\n}",
            ),
        ] {
            assert_eq!(json_value_text(raw), want, "value {raw}");
        }
    }
}
