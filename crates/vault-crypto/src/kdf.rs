//! Argon2id password-based key derivation with validated parameters and calibration.

use std::time::{Duration, Instant};

use argon2::{Algorithm, Argon2, Version};

use crate::{Error, KEY_LEN, Key256, SecretBytes};

/// Salt length used by vault (bytes). Argon2 accepts 8 or more; 16 is RFC 9106's recommendation
/// and is what vault writes.
pub const SALT_LEN: usize = 16;

/// Validated Argon2id parameters.
///
/// Construction checks every field against the `MIN_*`/`MAX_*` bounds below, so a value of this
/// type (including one decoded from an untrusted file) can always be handed to Argon2 without
/// making it allocate more than [`KdfParams::MAX_MEMORY_KIB`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KdfParams {
    memory_kib: u32,
    iterations: u32,
    lanes: u32,
    output_len: u32,
}

impl KdfParams {
    /// Smallest memory cost accepted, in KiB, for a single lane (Argon2 itself needs 8 KiB per
    /// lane). Far below anything safe: it exists so tests and benchmarks can run cheaply.
    pub const MIN_MEMORY_KIB: u32 = 8;
    /// Largest memory cost accepted: 4 GiB. Bounds what a hostile vault header can make us allocate.
    pub const MAX_MEMORY_KIB: u32 = 4 * 1024 * 1024;
    /// Fewest passes.
    pub const MIN_ITERATIONS: u32 = 1;
    /// Most passes.
    pub const MAX_ITERATIONS: u32 = 1024;
    /// Fewest lanes.
    pub const MIN_LANES: u32 = 1;
    /// Most lanes.
    pub const MAX_LANES: u32 = 64;
    /// Shortest output.
    pub const MIN_OUTPUT_LEN: u32 = 16;
    /// Longest output.
    pub const MAX_OUTPUT_LEN: u32 = 64;

    /// The recommended floor: parameters weaker than 64 MiB or 2 passes are accepted (tests and
    /// benchmarks need them) but callers should warn; see [`KdfParams::is_below_recommended`].
    pub const RECOMMENDED_MIN_MEMORY_KIB: u32 = 64 * 1024;
    /// See [`KdfParams::RECOMMENDED_MIN_MEMORY_KIB`].
    pub const RECOMMENDED_MIN_ITERATIONS: u32 = 2;

    /// The default: 256 MiB, 3 passes, 4 lanes, 32-byte output — about half a second on two
    /// cores with the `parallel` feature (see docs/BENCHMARKS.md).
    pub const DEFAULT: Self = Self {
        memory_kib: 256 * 1024,
        iterations: 3,
        lanes: 4,
        output_len: KEY_LEN as u32,
    };

    /// Validates and builds parameters.
    ///
    /// # Errors
    /// [`Error::InvalidKdfParams`] naming the first field outside its bounds; memory must also
    /// be at least 8 KiB per lane.
    pub fn new(
        memory_kib: u32,
        iterations: u32,
        lanes: u32,
        output_len: u32,
    ) -> Result<Self, Error> {
        check("lanes", lanes, Self::MIN_LANES, Self::MAX_LANES)?;
        check(
            "memory_kib",
            memory_kib,
            Self::MIN_MEMORY_KIB.saturating_mul(lanes),
            Self::MAX_MEMORY_KIB,
        )?;
        check(
            "iterations",
            iterations,
            Self::MIN_ITERATIONS,
            Self::MAX_ITERATIONS,
        )?;
        check(
            "output_len",
            output_len,
            Self::MIN_OUTPUT_LEN,
            Self::MAX_OUTPUT_LEN,
        )?;
        Ok(Self {
            memory_kib,
            iterations,
            lanes,
            output_len,
        })
    }

    /// Parameters for a 32-byte key.
    ///
    /// # Errors
    /// As [`KdfParams::new`].
    pub fn for_key(memory_kib: u32, iterations: u32, lanes: u32) -> Result<Self, Error> {
        Self::new(memory_kib, iterations, lanes, KEY_LEN as u32)
    }

    /// Memory cost in KiB.
    pub const fn memory_kib(&self) -> u32 {
        self.memory_kib
    }
    /// Number of passes.
    pub const fn iterations(&self) -> u32 {
        self.iterations
    }
    /// Degree of parallelism.
    pub const fn lanes(&self) -> u32 {
        self.lanes
    }
    /// Output length in bytes.
    pub const fn output_len(&self) -> u32 {
        self.output_len
    }

    /// True when these parameters are weaker than the recommended floor.
    pub const fn is_below_recommended(&self) -> bool {
        self.memory_kib < Self::RECOMMENDED_MIN_MEMORY_KIB
            || self.iterations < Self::RECOMMENDED_MIN_ITERATIONS
    }

    fn argon2_params(&self, data: &[u8]) -> Result<argon2::Params, Error> {
        let mut builder = argon2::ParamsBuilder::new();
        builder
            .m_cost(self.memory_kib)
            .t_cost(self.iterations)
            .p_cost(self.lanes)
            .output_len(self.output_len as usize);
        if !data.is_empty() {
            builder.data(
                argon2::AssociatedData::new(data)
                    .map_err(|_| Error::Kdf("associated data too long"))?,
            );
        }
        builder
            .build()
            .map_err(|_| Error::Kdf("parameters rejected by argon2"))
    }
}

impl Default for KdfParams {
    fn default() -> Self {
        Self::DEFAULT
    }
}

fn check(field: &'static str, value: u32, min: u32, max: u32) -> Result<(), Error> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(Error::InvalidKdfParams {
            field,
            value: value.into(),
            min: min.into(),
            max: max.into(),
        })
    }
}

/// Derives `params.output_len()` bytes from a passphrase with Argon2id (version 0x13).
///
/// # Errors
/// [`Error::InvalidLength`] if the salt is shorter than 8 bytes; [`Error::Kdf`] if Argon2 fails
/// (for example it cannot allocate its memory).
pub fn derive(passphrase: &[u8], salt: &[u8], params: &KdfParams) -> Result<SecretBytes, Error> {
    derive_with_secret(passphrase, salt, &[], &[], params)
}

/// Derives a 32-byte key from a passphrase with Argon2id.
///
/// # Errors
/// As [`derive()`]; [`Error::InvalidLength`] if `params` asks for other than 32 bytes.
pub fn derive_key(passphrase: &[u8], salt: &[u8], params: &KdfParams) -> Result<Key256, Error> {
    if params.output_len as usize != KEY_LEN {
        return Err(Error::InvalidLength {
            what: "KDF output for a key",
            expected: KEY_LEN,
            got: params.output_len as usize,
        });
    }
    let mut key = Key256::zeroed();
    hash_into(passphrase, salt, &[], &[], params, key.expose_secret_mut())?;
    Ok(key)
}

/// Argon2id with RFC 9106's optional secret value `K` and associated data `X`.
///
/// vault itself passes neither; this exists so the RFC 9106 test vector can be checked through
/// this crate's parameter type.
///
/// # Errors
/// As [`derive()`]; [`Error::Kdf`] if `secret` or `associated_data` is too long (over 32 bytes of
/// associated data).
pub fn derive_with_secret(
    passphrase: &[u8],
    salt: &[u8],
    secret: &[u8],
    associated_data: &[u8],
    params: &KdfParams,
) -> Result<SecretBytes, Error> {
    let mut out = SecretBytes::zeroed(params.output_len as usize);
    hash_into(
        passphrase,
        salt,
        secret,
        associated_data,
        params,
        out.expose_secret_mut(),
    )?;
    Ok(out)
}

std::thread_local! {
    static DERIVATIONS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// How many Argon2id derivations this thread has run: for tests and benchmarks that check an
/// operation costs the key derivations it should (each one is deliberately slow).
pub fn derivations_on_this_thread() -> u64 {
    DERIVATIONS.with(std::cell::Cell::get)
}

fn hash_into(
    passphrase: &[u8],
    salt: &[u8],
    secret: &[u8],
    associated_data: &[u8],
    params: &KdfParams,
    out: &mut [u8],
) -> Result<(), Error> {
    DERIVATIONS.with(|n| n.set(n.get() + 1));
    if salt.len() < argon2::MIN_SALT_LEN {
        return Err(Error::InvalidLength {
            what: "salt",
            expected: SALT_LEN,
            got: salt.len(),
        });
    }
    let p = params.argon2_params(associated_data)?;
    let ctx = if secret.is_empty() {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, p)
    } else {
        Argon2::new_with_secret(secret, Algorithm::Argon2id, Version::V0x13, p)
            .map_err(|_| Error::Kdf("secret too long"))?
    };
    ctx.hash_password_into(passphrase, salt, out)
        .map_err(|e| match e {
            argon2::Error::OutOfMemory => Error::Kdf("out of memory"),
            _ => Error::Kdf("argon2 rejected its input"),
        })
}

/// Picks Argon2id parameters whose derivation takes about `target` on this machine, in the
/// spirit of KeePassXC's "decryption time" setting.
///
/// Memory stays near `max_memory_kib` (the stronger lever against GPU attackers) and the pass
/// count is fitted to a linear model `time = fixed + passes × per_pass` measured with 1 and 2
/// passes, rounded up, with memory trimmed to absorb the rounding; when even one pass at that
/// memory exceeds the target, memory is scaled down instead.
///
/// # Errors
/// [`Error::InvalidKdfParams`] if the fixed inputs are out of bounds; [`Error::Kdf`] if Argon2
/// fails while measuring.
pub fn calibrate(target: Duration, max_memory_kib: u32, lanes: u32) -> Result<KdfParams, Error> {
    let salt = [0u8; SALT_LEN];
    let time = |params: &KdfParams| -> Result<Duration, Error> {
        let start = Instant::now();
        derive_key(b"calibration", &salt, params)?;
        Ok(start.elapsed())
    };
    let one = KdfParams::for_key(max_memory_kib, 1, lanes)?;
    // The first run in a process pays for faulting in fresh memory; warm up, then keep the
    // faster of two runs so one noisy sample cannot skew the fit.
    derive_key(b"calibration", &salt, &one)?;
    let best_of_two =
        |params: &KdfParams| -> Result<Duration, Error> { Ok(time(params)?.min(time(params)?)) };
    let t1 = best_of_two(&one)?;
    if t1 >= target {
        // Even one pass is too slow: scale memory down proportionally, keep a single pass.
        let scale = target.as_secs_f64() / t1.as_secs_f64().max(1e-9);
        let memory = (f64::from(max_memory_kib) * scale) as u32;
        let memory = memory.max(KdfParams::MIN_MEMORY_KIB.saturating_mul(lanes));
        return KdfParams::for_key(memory, 1, lanes);
    }
    let t2 = best_of_two(&KdfParams::for_key(max_memory_kib, 2, lanes)?)?;
    // On a busy machine t2 − t1 can come out near zero (or above t1); a pass costs at most the
    // whole first run and, as filling memory dominates, at least half of it.
    let t1s = t1.as_secs_f64();
    let per_pass = t2
        .saturating_sub(t1)
        .as_secs_f64()
        .clamp(t1s * 0.5, t1s)
        .max(1e-6);
    let fixed = (t1.as_secs_f64() - per_pass).max(0.0);
    let budget = (target.as_secs_f64() - fixed).max(per_pass);
    // Whole passes only: round up, then trim memory so the total lands on the target instead of
    // up to a pass away from it. Both the per-pass and the "fixed" cost (allocating and filling
    // the first blocks) are proportional to memory, so the whole time scales with it.
    let passes = (budget / per_pass)
        .ceil()
        .clamp(1.0, f64::from(KdfParams::MAX_ITERATIONS));
    let scale = (target.as_secs_f64() / (fixed + passes * per_pass)).min(1.0);
    let memory = ((f64::from(max_memory_kib) * scale) as u32)
        .max(KdfParams::MIN_MEMORY_KIB.saturating_mul(lanes));
    KdfParams::for_key(memory, passes as u32, lanes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> KdfParams {
        KdfParams::for_key(64, 1, 1).unwrap()
    }

    #[test]
    fn bounds_are_enforced() {
        assert!(KdfParams::new(7, 1, 1, 32).is_err());
        assert!(KdfParams::new(31, 1, 4, 32).is_err(), "8 KiB per lane");
        assert!(KdfParams::new(32, 1, 4, 32).is_ok());
        assert!(KdfParams::new(KdfParams::MAX_MEMORY_KIB + 1, 1, 1, 32).is_err());
        assert!(KdfParams::new(64, 0, 1, 32).is_err());
        assert!(KdfParams::new(64, 1, 0, 32).is_err());
        assert!(KdfParams::new(64, 1, 65, 32).is_err());
        assert!(KdfParams::new(64, 1, 1, 15).is_err());
        assert!(KdfParams::new(64, 1, 1, 65).is_err());
        match KdfParams::new(64, 0, 1, 32) {
            Err(Error::InvalidKdfParams { field, value, .. }) => {
                assert_eq!(field, "iterations");
                assert_eq!(value, 0);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(!KdfParams::DEFAULT.is_below_recommended());
        assert!(cheap().is_below_recommended());
    }

    #[test]
    fn derivation_depends_on_every_input() {
        let salt = [1u8; SALT_LEN];
        let base = derive_key(b"pass", &salt, &cheap()).unwrap();
        assert_eq!(base, derive_key(b"pass", &salt, &cheap()).unwrap());
        assert_ne!(base, derive_key(b"pasS", &salt, &cheap()).unwrap());
        assert_ne!(
            base,
            derive_key(b"pass", &[2u8; SALT_LEN], &cheap()).unwrap()
        );
        let other = KdfParams::for_key(64, 2, 1).unwrap();
        assert_ne!(base, derive_key(b"pass", &salt, &other).unwrap());
    }

    #[test]
    fn short_salt_and_wrong_output_len_are_errors() {
        assert!(matches!(
            derive_key(b"p", &[0; 7], &cheap()),
            Err(Error::InvalidLength { what: "salt", .. })
        ));
        let p = KdfParams::new(64, 1, 1, 16).unwrap();
        assert!(derive_key(b"p", &[0; 16], &p).is_err());
        assert_eq!(derive(b"p", &[0; 16], &p).unwrap().len(), 16);
    }

    #[test]
    fn calibration_returns_valid_params_within_the_caps() {
        // How close the result lands to the target is a timing question, measured by
        // `cargo xtask bench crypto`, not asserted here.
        for (ms, cap, lanes) in [(1, 1024, 1), (30, 2048, 2), (0, 64, 1)] {
            let p = calibrate(Duration::from_millis(ms), cap, lanes).unwrap();
            assert!(p.memory_kib() <= cap, "{p:?}");
            assert_eq!(p.lanes(), lanes);
            assert!(p.iterations() >= 1 && p.iterations() <= KdfParams::MAX_ITERATIONS);
            derive_key(b"p", &[0; 16], &p).unwrap();
        }
    }
}
