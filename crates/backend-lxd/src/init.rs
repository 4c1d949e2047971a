//! The build container's first process. LXD starts `/sbin/init` by default, which most images berth builds on
//! lack (a debootstrap'd Debian, distroless, scratch), and a build container needs nothing from an init but to
//! stay alive while steps run through exec. berth writes a 129-byte static program that waits for signals
//! forever (`pause()` in a loop) into its state folder, mounts it read-only at `/dev/.berth-init` (the
//! container's `/dev` is a tmpfs: nothing reaches the root folder or a layer) and names it in `lxc.init.cmd`.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use berth_core::{Error, Operation, Result};

use crate::errors::io_error;

/// Where the program appears in the container.
pub(crate) const INIT_PATH: &str = "/dev/.berth-init";

/// x86_64 machine code: `mov eax, 34 (pause); syscall; jmp back`.
const X86_64_CODE: [u8; 9] = [0xb8, 0x22, 0, 0, 0, 0x0f, 0x05, 0xeb, 0xf7];

/// An ELF64 executable of one loadable segment holding `code` (entry right after the headers).
fn elf(machine: u16, code: &[u8]) -> Vec<u8> {
    const BASE: u64 = 0x40_0000;
    const HEADERS: u64 = 64 + 56;
    let size = HEADERS + code.len() as u64;
    let mut out = Vec::with_capacity(size as usize);
    out.extend_from_slice(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0"); // 64-bit, little-endian, version 1
    out.extend_from_slice(&2u16.to_le_bytes()); // executable
    out.extend_from_slice(&machine.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&(BASE + HEADERS).to_le_bytes()); // entry
    out.extend_from_slice(&64u64.to_le_bytes()); // program headers at
    out.extend_from_slice(&0u64.to_le_bytes()); // no section headers
    out.extend_from_slice(&0u32.to_le_bytes()); // flags
    for half in [64u16, 56, 1, 0, 0, 0] {
        out.extend_from_slice(&half.to_le_bytes()); // header sizes and counts
    }
    out.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    out.extend_from_slice(&5u32.to_le_bytes()); // read + execute
    out.extend_from_slice(&0u64.to_le_bytes()); // from file offset 0
    out.extend_from_slice(&BASE.to_le_bytes());
    out.extend_from_slice(&BASE.to_le_bytes());
    out.extend_from_slice(&size.to_le_bytes());
    out.extend_from_slice(&size.to_le_bytes());
    out.extend_from_slice(&0x1000u64.to_le_bytes());
    out.extend_from_slice(code);
    out
}

/// Writes the program for this machine into `state_dir` (once) and returns its path.
pub(crate) fn install(state_dir: &Path) -> Result<PathBuf> {
    let op = Operation::Build;
    let code = match std::env::consts::ARCH {
        "x86_64" => elf(0x3e, &X86_64_CODE),
        other => {
            return Err(Error::unsupported(
                crate::ENGINE,
                op.as_str(),
                format!("berth's LXD builder has no init program for {other} yet"),
            )
            .with_hint("build on an x86_64 machine, or with another engine"))
        }
    };
    let path = state_dir.join(format!("init-{}", std::env::consts::ARCH));
    if std::fs::read(&path).is_ok_and(|existing| existing == code) {
        return Ok(path);
    }
    std::fs::create_dir_all(state_dir).map_err(|e| io_error(op, state_dir.display(), e))?;
    let tmp = state_dir.join(format!("init.{}", crate::instance::unique_name()));
    std::fs::write(&tmp, &code)
        .and_then(|()| std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)))
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| io_error(op, path.display(), e))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_program_runs_until_killed() {
        let dir = tempfile::tempdir().expect("dir");
        let Ok(path) = install(dir.path()) else {
            panic!("no init program for {}", std::env::consts::ARCH);
        };
        let mut child = std::process::Command::new(&path)
            .spawn()
            .expect("the program starts");
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(
            child.try_wait().expect("wait").is_none(),
            "the program exited"
        );
        child.kill().expect("kill");
        child.wait().expect("reaped");
    }
}
