//! The instruction sets the native kernels are compiled for, and which of them this CPU runs.
//!
//! Every path computes the same operations in the same order: products are accumulated with
//! `f32::mul_add` (one rounding, as a hardware fused multiply-add), and reductions sum fixed
//! logical lanes whatever the register width. So the paths are bit-identical, and an
//! instance's results do not depend on the machine that ran it (`every_isa_path_is_bit_identical`
//! in `native::tests` checks each path this CPU offers against the portable one).

/// One compiled build of the forward and backward passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// Baseline code; `mul_add` is the C library's correctly rounded `fmaf` where the target
    /// has no FMA instruction (slow, but the same bits).
    Portable,
    /// x86-64 AVX2 with FMA3: eight lanes per instruction.
    Avx2Fma,
    /// x86-64 AVX-512F (which includes FMA): sixteen lanes per instruction.
    Avx512,
}

impl Isa {
    /// Every path, fastest first.
    pub const ALL: [Isa; 3] = [Isa::Avx512, Isa::Avx2Fma, Isa::Portable];

    /// Whether this CPU can run the path.
    pub fn is_supported(self) -> bool {
        match self {
            Isa::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => {
                std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => std::is_x86_feature_detected!("avx512f"),
            #[cfg(not(target_arch = "x86_64"))]
            Isa::Avx2Fma | Isa::Avx512 => false,
        }
    }

    /// The fastest path this CPU runs.
    pub fn best() -> Isa {
        Isa::ALL
            .into_iter()
            .find(|isa| isa.is_supported())
            .unwrap_or(Isa::Portable)
    }

    /// The paths this CPU runs, fastest first.
    pub fn supported() -> Vec<Isa> {
        Isa::ALL
            .into_iter()
            .filter(|isa| isa.is_supported())
            .collect()
    }

    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Avx2Fma => "avx2+fma",
            Isa::Avx512 => "avx512",
        }
    }
}

impl std::fmt::Display for Isa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
