//! The command that installs a missing tool, in the words of this machine's distribution (`/etc/os-release`).

/// A tool rootless Podman needs that comes in a package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    /// `newuidmap` and `newgidmap`.
    IdMappers,
    /// `podman` itself.
    Podman,
}

/// The install command for `tool` on the distribution `/etc/os-release` (its text, if readable) describes.
pub fn install_command(os_release: Option<&str>, tool: Tool) -> String {
    let family = os_release.map(families).unwrap_or_default();
    let is = |names: &[&str]| family.iter().any(|f| names.contains(&f.as_str()));
    let (manager, id_mappers) = if is(&["debian", "ubuntu"]) {
        ("sudo apt-get install", "uidmap")
    } else if is(&["fedora", "rhel", "centos"]) {
        ("sudo dnf install", "shadow-utils")
    } else if is(&["suse", "opensuse"]) {
        ("sudo zypper install", "shadow")
    } else if is(&["arch"]) {
        ("sudo pacman -S", "shadow")
    } else if is(&["alpine"]) {
        ("sudo apk add", "shadow-uidmap")
    } else {
        return match tool {
            Tool::IdMappers => "install your distribution's uidmap (shadow-utils) package".into(),
            Tool::Podman => "install Podman: https://podman.io/docs/installation".into(),
        };
    };
    let package = match tool {
        Tool::IdMappers => id_mappers,
        Tool::Podman => "podman",
    };
    format!("{manager} {package}")
}

/// `ID` and the words of `ID_LIKE`, unquoted and lowercase.
fn families(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            line.strip_prefix("ID=")
                .or_else(|| line.strip_prefix("ID_LIKE="))
        })
        .flat_map(|value| value.trim().trim_matches(['"', '\'']).split_whitespace())
        .map(str::to_ascii_lowercase)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_distribution_decides_the_package_manager_and_name() {
        let debian = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n";
        assert_eq!(
            install_command(Some(debian), Tool::IdMappers),
            "sudo apt-get install uidmap"
        );
        let rocky = "NAME=\"Rocky Linux\"\nID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\n";
        assert_eq!(
            install_command(Some(rocky), Tool::IdMappers),
            "sudo dnf install shadow-utils"
        );
        assert_eq!(
            install_command(Some(rocky), Tool::Podman),
            "sudo dnf install podman"
        );
        assert!(install_command(None, Tool::IdMappers).contains("uidmap"));
    }
}
