//! Durations as people write them in policies: a number and a unit (`90d`, `12h`).

/// Parses a duration into seconds: a number and a unit, `d`, `h`, `m` or `s`.
pub fn parse(s: &str) -> Result<u64, String> {
    let bad = || {
        format!("invalid duration {s:?}: write a number and a unit, d, h, m or s (e.g. 90d, 12h)")
    };
    let s = s.trim();
    let unit = s.chars().last().ok_or_else(bad)?;
    let n: u64 = s[..s.len() - unit.len_utf8()].parse().map_err(|_| bad())?;
    let mult = match unit {
        'd' => 86_400,
        'h' => 3600,
        'm' => 60,
        's' => 1,
        _ => return Err(bad()),
    };
    n.checked_mul(mult).ok_or_else(bad)
}

/// Seconds in the largest whole unit (`90d`, `12h`, `30m`, `45s`).
pub fn human(secs: u64) -> String {
    match secs {
        s if s > 0 && s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s > 0 && s % 3600 == 0 => format!("{}h", s / 3600),
        s if s > 0 && s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_round_trip_and_bad_ones_say_how_to_write_them() {
        assert_eq!(parse("90d"), Ok(90 * 86_400));
        assert_eq!(parse("12h"), Ok(12 * 3600));
        assert_eq!(human(parse("30d").unwrap()), "30d");
        assert_eq!(human(90), "90s");
        for bad in ["", "d", "90", "ninety d", "5w", "-1d"] {
            assert!(parse(bad).unwrap_err().contains("e.g. 90d"), "{bad}");
        }
    }
}
