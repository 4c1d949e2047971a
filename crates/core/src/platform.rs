//! This machine's platform as OCI names it (`linux/amd64`): the one architecture table berth has, used where
//! an engine builds only for its host (Podman) and where berth picks an image from an index (containerd).

/// The host's architecture as OCI names it (Rust's `x86_64` is `amd64`, `aarch64` is `arm64`...).
pub fn host_arch() -> &'static str {
    oci_arch(std::env::consts::ARCH)
}

/// The host's platform, `linux/<arch>`: berth builds Linux images only.
pub fn host_platform() -> String {
    format!("linux/{}", host_arch())
}

fn oci_arch(rust_arch: &'static str) -> &'static str {
    match rust_arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "loongarch64" => "loong64",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_architectures_get_their_oci_names() {
        assert_eq!(oci_arch("x86_64"), "amd64");
        assert_eq!(oci_arch("aarch64"), "arm64");
        assert_eq!(oci_arch("s390x"), "s390x");
        assert_eq!(oci_arch("riscv64"), "riscv64");
        assert!(host_platform().starts_with("linux/"));
    }
}
