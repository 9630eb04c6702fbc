//! Weights at parts-per-million resolution and the sticky bucket hash.

/// One million: 100%.
pub const PPM_SCALE: u32 = 1_000_000;

/// Parses a percentage (`"5%"`, `"0.1%"`, `"0.0001%"`, `"100%"`) into parts per
/// million. At most 4 decimals (1 ppm), between 0% and 100%.
pub fn parse_weight(text: &str) -> Result<u32, String> {
    let t = text.trim();
    let Some(number) = t.strip_suffix('%') else {
        return Err(format!(
            "'{text}' is not a percentage: write it like \"5%\" or \"0.1%\""
        ));
    };
    if number.starts_with('-') {
        return Err(format!(
            "'{text}' is negative: a weight is between 0% and 100%"
        ));
    }
    let (int, frac) = match number.split_once('.') {
        Some((i, f)) => (i, f),
        None => (number, ""),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(int) || (number.contains('.') && !digits(frac)) {
        return Err(format!(
            "'{text}' is not a percentage: write it like \"5%\" or \"0.1%\""
        ));
    }
    if frac.len() > 4 {
        return Err(format!(
            "'{text}' has more than 4 decimals: the finest weight is \"0.0001%\" (one in a million)"
        ));
    }
    let int_trimmed = int.trim_start_matches('0');
    if int_trimmed.len() > 3 {
        return Err(format!("'{text}' is more than 100%"));
    }
    let whole: u32 = if int_trimmed.is_empty() {
        0
    } else {
        int_trimmed
            .parse()
            .map_err(|_| format!("'{text}' is not a percentage"))?
    };
    let mut frac_ppm: u32 = 0;
    for (i, b) in frac.bytes().enumerate() {
        frac_ppm += u32::from(b - b'0') * 10u32.pow(3 - i as u32);
    }
    let ppm = whole * 10_000 + frac_ppm;
    if ppm > PPM_SCALE {
        return Err(format!("'{text}' is more than 100%"));
    }
    Ok(ppm)
}

/// FNV-1a 64 over `salt`, a separator byte and `key`, then a 64-bit finalizer
/// (splitmix64's) so nearby keys spread evenly.
pub fn sticky_hash(salt: &[u8], key: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    for &b in salt.iter().chain(&[0xff]).chain(key) {
        h ^= u64::from(b);
        h = h.wrapping_mul(PRIME);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The user's bucket in `0..1_000_000`: stable for a (canary, key) pair. A user is
/// on the canary iff `bucket < weight_ppm`, so raising the weight only ever moves
/// users from stable to canary.
pub fn bucket(salt: &[u8], key: &[u8]) -> u32 {
    let h = sticky_hash(salt, key) >> 32;
    ((h * u64::from(PPM_SCALE)) >> 32) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_percentages() {
        assert_eq!(parse_weight("5%"), Ok(50_000));
        assert_eq!(parse_weight("0.1%"), Ok(1_000));
        assert_eq!(parse_weight("0.0001%"), Ok(1));
        assert_eq!(parse_weight("100%"), Ok(1_000_000));
        assert_eq!(parse_weight("100.0000%"), Ok(1_000_000));
        assert_eq!(parse_weight("0%"), Ok(0));
        assert_eq!(parse_weight("007.5%"), Ok(75_000));
        assert_eq!(parse_weight(" 12.34% "), Ok(123_400));
        assert_eq!(parse_weight("99.9999%"), Ok(999_999));
    }

    #[test]
    fn rejects_bad_weights_with_reasons() {
        let cases = [
            ("100.0001%", "more than 100%"),
            ("101%", "more than 100%"),
            ("5000%", "more than 100%"),
            ("99999999999999999999%", "more than 100%"),
            ("-1%", "negative"),
            ("0.00001%", "more than 4 decimals"),
            ("5", "not a percentage"),
            ("0.05", "not a percentage"),
            ("%", "not a percentage"),
            ("", "not a percentage"),
            ("five%", "not a percentage"),
            (".5%", "not a percentage"),
            ("5.%", "not a percentage"),
            ("+5%", "not a percentage"),
            ("5 %", "not a percentage"),
            ("1e2%", "not a percentage"),
            ("5%%", "not a percentage"),
        ];
        for (input, reason) in cases {
            let err = parse_weight(input).unwrap_err();
            assert!(err.contains(reason), "{input:?}: {err}");
        }
    }

    #[test]
    fn buckets_are_stable_and_in_range() {
        for i in 0..10_000u32 {
            let key = i.to_string();
            let b = bucket(b"canary", key.as_bytes());
            assert!(b < PPM_SCALE);
            assert_eq!(b, bucket(b"canary", key.as_bytes()));
        }
        assert_ne!(bucket(b"a", b"user-1"), bucket(b"b", b"user-1"));
    }

    #[test]
    fn buckets_are_uniform() {
        let n = 100_000u32;
        let mut below = 0u32;
        for i in 0..n {
            if bucket(b"c", format!("user-{i}").as_bytes()) < 50_000 {
                below += 1;
            }
        }
        let share = f64::from(below) / f64::from(n);
        assert!((share - 0.05).abs() < 0.005, "{share}");
    }
}
