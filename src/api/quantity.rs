//! Kubernetes resource quantities, exactly as Go's `resource.Quantity` reads, rounds, adds and prints them: the
//! `ray start` flags take their integer `Value()` (§6.1), the status sums them and prints the canonical form
//! (`1500m`, `3Gi`, `2k`) KubeRay shows (§2.3). k8s-openapi keeps quantities as strings.

/// The notation a quantity was written in; Go keeps it and prints the sum in it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Format {
    /// No suffix or `n u m k M G T P E`.
    #[default]
    DecimalSi,
    /// `Ki Mi Gi Ti Pi Ei`.
    BinarySi,
    /// `1e3`, `5E-2`.
    DecimalExponent,
}

/// An exact quantity: `unscaled × 10^scale`, and the notation it prints in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Amount {
    unscaled: i128,
    scale: i32,
    format: Format,
}

/// Go rounds every quantity up to a whole number of nano-units when it parses it.
const NANO_SCALE: i32 = -9;

const DECIMAL_SUFFIXES: [(&str, i32); 10] =
    [("n", -9), ("u", -6), ("m", -3), ("", 0), ("k", 3), ("M", 6), ("G", 9), ("T", 12), ("P", 15), ("E", 18)];
const BINARY_SUFFIXES: [&str; 7] = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];

impl Amount {
    /// `<sign><digits>[.<digits>]<suffix>`; None for what the API server would have rejected.
    pub fn parse(text: &str) -> Option<Amount> {
        let (negative, unsigned) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text.strip_prefix('+').unwrap_or(text)),
        };
        let number_end = unsigned.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(unsigned.len());
        let (number, suffix) = unsigned.split_at(number_end);
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        let digits = format!("{whole}{fraction}");
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let mut unscaled = digits.parse::<i128>().ok()?;
        let fraction_digits = i32::try_from(fraction.len()).ok()?;
        let (format, exponent) = if let Some((_, exponent)) = DECIMAL_SUFFIXES.iter().find(|(s, _)| *s == suffix) {
            (Format::DecimalSi, *exponent)
        } else if let Some(power) = BINARY_SUFFIXES.iter().skip(1).position(|s| *s == suffix) {
            let power = u32::try_from(power + 1).ok()?;
            unscaled = unscaled.checked_mul(1024i128.checked_pow(power)?)?;
            (Format::BinarySi, 0)
        } else {
            (Format::DecimalExponent, suffix.strip_prefix(['e', 'E'])?.parse::<i32>().ok()?)
        };
        let amount =
            Amount { unscaled: if negative { -unscaled } else { unscaled }, scale: exponent - fraction_digits, format };
        Some(amount.rounded_up_to_nano())
    }

    fn rounded_up_to_nano(self) -> Amount {
        if self.scale >= NANO_SCALE {
            return self;
        }
        let divisor = pow10(NANO_SCALE - self.scale);
        let quotient = self.unscaled / divisor;
        let away_from_zero = if self.unscaled % divisor == 0 { 0 } else { self.unscaled.signum() };
        Amount { unscaled: quotient + away_from_zero, scale: NANO_SCALE, format: self.format }
    }

    pub fn is_zero(&self) -> bool {
        self.unscaled == 0
    }

    /// Go's `Add`: a zero quantity takes the notation of what is added to it.
    pub fn add(&mut self, other: Amount) {
        if self.is_zero() {
            self.format = other.format;
        }
        let scale = self.scale.min(other.scale);
        let left = self.unscaled.saturating_mul(pow10(self.scale - scale));
        let right = other.unscaled.saturating_mul(pow10(other.scale - scale));
        self.unscaled = left.saturating_add(right);
        self.scale = scale;
    }

    pub fn times(self, count: i64) -> Amount {
        Amount { unscaled: self.unscaled.saturating_mul(i128::from(count)), ..self }
    }

    /// Go's canonical `String()`: binary notation only for whole numbers of at least 1024, else decimal with an
    /// exponent that is a multiple of 3.
    pub fn canonical(&self) -> String {
        if self.unscaled == 0 {
            return "0".to_string();
        }
        if self.format == Format::BinarySi
            && let Some(integer) = self.integer().filter(|value| value.unsigned_abs() >= 1024)
        {
            let (mut value, mut power) = (integer, 0);
            while value % 1024 == 0 && power + 1 < BINARY_SUFFIXES.len() {
                value /= 1024;
                power += 1;
            }
            return format!("{value}{}", BINARY_SUFFIXES[power]);
        }
        let (mut mantissa, mut exponent) = (self.unscaled, self.scale);
        while mantissa % 10 == 0 {
            mantissa /= 10;
            exponent += 1;
        }
        match exponent.rem_euclid(3) {
            1 => (mantissa, exponent) = (mantissa.saturating_mul(10), exponent - 1),
            2 => (mantissa, exponent) = (mantissa.saturating_mul(100), exponent - 2),
            _ => {}
        }
        let suffix = match self.format {
            Format::DecimalExponent if exponent == 0 => String::new(),
            Format::DecimalExponent => format!("e{exponent}"),
            Format::DecimalSi | Format::BinarySi => DECIMAL_SUFFIXES
                .iter()
                .find(|(_, e)| *e == exponent)
                .map_or_else(|| format!("e{exponent}"), |(suffix, _)| suffix.to_string()),
        };
        format!("{mantissa}{suffix}")
    }

    /// Go's `Value()`: rounded up, away from zero, to an integer; capped at the int64 range.
    pub fn value(&self) -> i64 {
        let rounded = if self.scale >= 0 {
            self.unscaled.saturating_mul(pow10(self.scale))
        } else {
            let divisor = pow10(-self.scale);
            let away_from_zero = if self.unscaled % divisor == 0 { 0 } else { self.unscaled.signum() };
            self.unscaled / divisor + away_from_zero
        };
        i64::try_from(rounded).unwrap_or(if rounded < 0 { i64::MIN } else { i64::MAX })
    }

    /// Go's `AsApproximateFloat64`.
    pub fn as_f64(&self) -> f64 {
        self.unscaled as f64 * 10f64.powi(self.scale)
    }

    fn integer(&self) -> Option<i128> {
        if self.scale >= 0 {
            return Some(self.unscaled.saturating_mul(pow10(self.scale)));
        }
        let divisor = pow10(-self.scale);
        (self.unscaled % divisor == 0).then(|| self.unscaled / divisor)
    }
}

fn pow10(exponent: i32) -> i128 {
    u32::try_from(exponent).ok().and_then(|e| 10i128.checked_pow(e)).unwrap_or(i128::MAX)
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    fn sum(texts: &[&str]) -> String {
        let mut total = Amount::default();
        for text in texts {
            total.add(Amount::parse(text).unwrap());
        }
        total.canonical()
    }

    #[rstest]
    #[case::millis_and_whole(&["500m", "1"], "1500m")]
    #[case::whole_cpus(&["1", "2"], "3")]
    #[case::thousand_is_k(&["1000"], "1k")]
    #[case::binary_stays_binary(&["1Gi", "512Mi"], "1536Mi")]
    #[case::binary_whole(&["512Mi", "512Mi"], "1Gi")]
    #[case::binary_below_1024_prints_decimal(&["1000Mi", "-999Mi", "-1048575"], "1")]
    #[case::decimal_memory(&["2G", "1G"], "3G")]
    #[case::first_notation_wins(&["1G", "1Gi"], "2073741824")]
    #[case::zero_takes_the_next_notation(&["0", "1Gi"], "1Gi")]
    #[case::fraction(&["0.5", "0.25"], "750m")]
    #[case::exponent(&["1e3", "1e3"], "2e3")]
    #[case::nothing(&[], "0")]
    fn sums_print_as_go_prints_them(#[case] texts: &[&str], #[case] expected: &str) {
        assert_eq!(sum(texts), expected);
    }

    #[test]
    fn parsing_rounds_up_to_whole_nano_units() {
        assert_eq!(Amount::parse("1.0000000001").unwrap().canonical(), "1000000001n");
    }

    #[test]
    fn times_keeps_the_notation() {
        assert_eq!(Amount::parse("2Gi").unwrap().times(3).canonical(), "6Gi");
    }

    #[rstest]
    #[case("")]
    #[case("1.2.3")]
    #[case("12Q")]
    fn malformed_quantities_are_none(#[case] text: &str) {
        assert_eq!(Amount::parse(text), None);
    }

    #[rstest]
    #[case::milli_rounds_up("500m", 1)]
    #[case::plain("2", 2)]
    #[case::fraction_rounds_up("1.5", 2)]
    #[case::leading_dot(".5", 1)]
    #[case::binary_si("1Gi", 1_073_741_824)]
    #[case::binary_fraction("1.5Gi", 1_610_612_736)]
    #[case::decimal_si("2G", 2_000_000_000)]
    #[case::kilo("1.5k", 1500)]
    #[case::exponent("1e3", 1000)]
    #[case::negative_exponent("15E-1", 2)]
    #[case::nano("1n", 1)]
    #[case::exa("9E", 9_000_000_000_000_000_000)]
    #[case::capped_at_int64("10E", i64::MAX)]
    #[case::negative_rounds_away_from_zero("-500m", -1)]
    #[case::zero("0", 0)]
    #[case::zero_milli("0m", 0)]
    fn quantities_round_up_like_go(#[case] text: &str, #[case] value: i64) {
        assert_eq!(Amount::parse(text).map(|q| q.value()), Some(value));
    }

    #[rstest]
    #[case::empty("")]
    #[case::word("abc")]
    #[case::two_dots("1.2.3")]
    #[case::unknown_suffix("1Zi")]
    #[case::bare_exponent("1e")]
    #[case::only_sign("-")]
    fn malformed_quantities_are_rejected_too(#[case] text: &str) {
        assert_eq!(Amount::parse(text), None);
    }
}
