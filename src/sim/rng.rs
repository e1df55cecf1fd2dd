//! The simulated cluster's only source of randomness (uids and `generateName` suffixes): a seeded generator, so a
//! run with the same seed and the same requests names everything the same way.

/// SplitMix64: tiny, fast and good enough for names; not for anything secret.
#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
}

/// The alphabet of the API server's `generateName` suffixes (no vowels, no look-alikes).
const NAME_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

impl Rng {
    pub fn seeded(seed: u64) -> Rng {
        Rng { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A version-4 UUID in its usual text form.
    pub fn uid(&mut self) -> String {
        let high = (self.next_u64() & !0xF000) | 0x4000;
        let low = (self.next_u64() & !(0xC << 60)) | (0x8 << 60);
        format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            high >> 32,
            (high >> 16) & 0xFFFF,
            high & 0xFFFF,
            low >> 48,
            low & 0xFFFF_FFFF_FFFF
        )
    }

    /// `length` characters of `[A-Za-z0-9]`, as Ray's generated submission ids have.
    pub fn alphanumeric(&mut self, length: usize) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        (0..length)
            .map(|_| {
                let index = usize::try_from(self.next_u64() % ALPHABET.len() as u64).unwrap_or_default();
                char::from(ALPHABET[index])
            })
            .collect()
    }

    /// Five characters as the API server appends them to a `generateName`.
    pub fn name_suffix(&mut self) -> String {
        (0..5)
            .map(|_| {
                let index = usize::try_from(self.next_u64() % NAME_ALPHABET.len() as u64).unwrap_or_default();
                char::from(NAME_ALPHABET[index])
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_names() {
        let (mut a, mut b) = (Rng::seeded(7), Rng::seeded(7));
        assert_eq!(a.uid(), b.uid());
        assert_eq!(a.name_suffix(), b.name_suffix());
        assert_ne!(Rng::seeded(8).uid(), Rng::seeded(7).uid());
    }

    #[test]
    fn uids_are_version_4_uuids() {
        let uid = Rng::seeded(1).uid();
        let groups: Vec<usize> = uid.split('-').map(str::len).collect();
        assert_eq!(groups, [8, 4, 4, 4, 12]);
        assert_eq!(&uid[14..15], "4");
        assert!(matches!(&uid[19..20], "8" | "9" | "a" | "b"), "{uid}");
    }

    #[test]
    fn suffixes_use_the_api_servers_alphabet() {
        let suffix = Rng::seeded(3).name_suffix();
        assert_eq!(suffix.len(), 5);
        assert!(suffix.bytes().all(|c| NAME_ALPHABET.contains(&c)), "{suffix}");
    }
}
