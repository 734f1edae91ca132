//! YAML 1.1 numbers as Ruby's Psych (GitLab) reads them, and Ruby's float formatting.

/// A plain scalar as Ruby's Psych (which GitLab uses, YAML 1.1) types it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Psych {
    Bool(bool),
    Int(i128),
    Float(f64),
    /// A string (also every quoted or block scalar).
    Str,
}

pub(super) fn psych_number(text: &str) -> Option<Psych> {
    let (neg, body) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let sign = |v: i128| if neg { -v } else { v };
    let fsign = |v: f64| if neg { -v } else { v };
    let lower = body.to_ascii_lowercase();
    if matches!(lower.as_str(), ".inf") {
        return Some(Psych::Float(fsign(f64::INFINITY)));
    }
    if lower == ".nan" && text == body {
        return Some(Psych::Float(f64::NAN));
    }
    if body.is_empty() || !body.as_bytes()[0].is_ascii_digit() && !body.starts_with('.') {
        return None;
    }
    // Sexagesimal (base 60): `1:30`, `1:02:03`, optionally with a fraction on the last part.
    if body.contains(':') {
        let (ints, frac) = match body.split_once('.') {
            Some((i, f)) => (i, Some(f)),
            None => (body, None),
        };
        let parts: Vec<&str> = ints.split(':').collect();
        if parts.len() > 3 {
            return None;
        }
        let first = parts[0].replace('_', "");
        if first.is_empty() || !first.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let mut total: i128 = first.parse().ok()?;
        for p in &parts[1..] {
            if p.is_empty() || p.len() > 2 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let v: i128 = p.parse().ok()?;
            if v > 59 {
                return None;
            }
            // Past i128, as a decimal integer past it (below): not read as a number. Ruby
            // would keep a bignum; no pipeline writes one, and wrapping would be wrong.
            total = total.checked_mul(60)?.checked_add(v)?;
        }
        return match frac {
            None => Some(Psych::Int(sign(total))),
            Some(f) if f.bytes().all(|b| b.is_ascii_digit() || b == b'_') => {
                let f: f64 = format!("0.{}", f.replace('_', "")).parse().ok()?;
                Some(Psych::Float(fsign(total as f64 + f)))
            }
            Some(_) => None,
        };
    }
    let digits: String = body.chars().filter(|c| *c != '_' && *c != ',').collect();
    if let Some(bin) = body.strip_prefix("0b") {
        if !bin.is_empty() && bin.bytes().all(|b| matches!(b, b'0' | b'1' | b'_' | b',')) {
            return i128::from_str_radix(&digits[2..], 2)
                .ok()
                .map(|v| Psych::Int(sign(v)));
        }
        return None;
    }
    if let Some(hex) = body.strip_prefix("0x") {
        if !hex.is_empty()
            && hex
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b'_' || b == b',')
        {
            return i128::from_str_radix(&digits[2..], 16)
                .ok()
                .map(|v| Psych::Int(sign(v)));
        }
        return None;
    }
    if body
        .bytes()
        .all(|b| b.is_ascii_digit() || b == b'_' || b == b',')
    {
        if body.len() > 1 && body.starts_with('0') {
            // YAML 1.1 octal.
            if body.bytes().all(|b| matches!(b, b'0'..=b'7' | b'_' | b',')) {
                return i128::from_str_radix(&digits, 8)
                    .ok()
                    .map(|v| Psych::Int(sign(v)));
            }
            return None;
        }
        // Decimal: `_` and `,` only between digits.
        if body.ends_with(['_', ',']) || body.contains("__") || body.contains(",,") {
            return None;
        }
        return digits.parse().ok().map(|v| Psych::Int(sign(v)));
    }
    // Float: [digits[_,]] . [digits] [e[+-]digits] (Psych needs the exponent's sign).
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let (int_part, frac_part) = mantissa.split_once('.')?;
    let int_ok = int_part.is_empty()
        || (int_part.as_bytes()[0].is_ascii_digit()
            && int_part
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b'_' || b == b','));
    let frac_ok = frac_part.bytes().all(|b| b.is_ascii_digit());
    let exp_ok = exponent.is_none_or(|e| {
        e.len() > 1
            && (e.starts_with('+') || e.starts_with('-'))
            && e[1..].bytes().all(|b| b.is_ascii_digit())
    });
    if !(int_ok && frac_ok && exp_ok) || (int_part.is_empty() && frac_part.is_empty()) {
        return None;
    }
    let clean: String = mantissa
        .chars()
        .filter(|c| *c != '_' && *c != ',')
        .collect();
    let mut f: f64 = format!("0{clean}0").parse().ok()?;
    if let Some(e) = exponent {
        let e: i32 = e.parse().ok()?;
        f = format!("{f}e{e}").parse().ok()?;
    }
    Some(Psych::Float(fsign(f)))
}

/// Ruby's `Float#to_s`: shortest round-trip digits, fixed notation for 1e-4 <= |f| < 1e16
/// (always with a fraction, `2.0`), scientific (`1.0e+16`, `1.0e-05`) otherwise.
pub(crate) fn ruby_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f < 0.0 { "-Infinity" } else { "Infinity" }.into();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    // `{:e}` gives the shortest round-trip digits: "1.1e0", "-1.25e-5".
    let sci = format!("{:e}", f.abs());
    let Some((mant, exp)) = sci.split_once('e') else {
        return f.to_string();
    };
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mant.chars().filter(char::is_ascii_digit).collect();
    let sign = if f < 0.0 { "-" } else { "" };
    let decpt = exp + 1;
    if !(-3..=16).contains(&decpt) {
        let (first, rest) = digits.split_at(1);
        let rest = if rest.is_empty() { "0" } else { rest };
        let esign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{first}.{rest}e{esign}{:02}", exp.abs());
    }
    if decpt <= 0 {
        let zeros = "0".repeat(usize::try_from(-decpt).unwrap_or(0));
        return format!("{sign}0.{zeros}{digits}");
    }
    let decpt = usize::try_from(decpt).unwrap_or(0);
    if digits.len() <= decpt {
        format!("{sign}{digits}{}.0", "0".repeat(decpt - digits.len()))
    } else {
        format!("{sign}{}.{}", &digits[..decpt], &digits[decpt..])
    }
}

#[cfg(test)]
mod tests {
    use crate::yaml::node::Scalar;

    fn plain(text: &str) -> Scalar {
        Scalar {
            text: text.into(),
            plain: true,
        }
    }

    #[test]
    fn psych_reads_yaml_1_1_numbers_like_ruby() {
        let cases = [
            ("1.10", "1.1"),
            ("3.10", "3.1"),
            ("010", "8"),
            ("0x1F", "31"),
            ("0b101", "5"),
            ("1_000", "1000"),
            ("1,000", "1000"),
            ("1:30", "90"),
            ("1:02:03", "3723"),
            ("1.0", "1.0"),
            ("2.", "2.0"),
            (".5", "0.5"),
            ("1.0e+20", "1.0e+20"),
            ("1.5e-7", "1.5e-07"),
            ("0.0001", "0.0001"),
            ("123456789012345678.0", "1.2345678901234568e+17"),
            ("-7", "-7"),
            ("+7", "7"),
            ("1e3", "1e3"),
            ("09", "09"),
            ("yes", "true"),
            ("Off", "false"),
            ("1.2.3", "1.2.3"),
            ("12:60", "12:60"),
            ("v1.10", "v1.10"),
            (".inf", "Infinity"),
            ("0", "0"),
            // Found by fuzzing: base 60 past i128 overflowed (a panic in a debug build, a
            // wrapped number in a release one). Kept as written, as a decimal past i128 is.
            (
                "55000008888888888888888888888888888888:8:58",
                "55000008888888888888888888888888888888:8:58",
            ),
        ];
        for (written, ruby) in cases {
            assert_eq!(plain(written).ruby_text(), ruby, "{written}");
        }
        let quoted = Scalar {
            text: "1.10".into(),
            plain: false,
        };
        assert_eq!(quoted.ruby_text(), "1.10");
    }
}
