//! The table of providers, in detection order. A new backend is one crate exporting a `PROVIDER`, one line in
//! [`PROVIDERS`] (behind its cargo feature) and one in [`BACKENDS`].

use berth_core::provider::EngineProvider;

/// Every backend compiled into this build, in the order detection tries them.
pub(crate) static PROVIDERS: &[&(dyn EngineProvider + 'static)] = &[
    #[cfg(feature = "docker")]
    &berth_backend_docker::PROVIDER,
    #[cfg(feature = "podman")]
    &berth_backend_podman::PROVIDER,
    #[cfg(feature = "containerd")]
    &berth_backend_containerd::PROVIDER,
    #[cfg(feature = "lxd")]
    &berth_backend_lxd::PROVIDER,
];

/// Every backend berth has, whether or not this build has it: its name, which is also its cargo feature, and
/// whether it is compiled in. A name from here that [`PROVIDERS`] lacks is "built without", not "unknown".
pub(crate) static BACKENDS: &[(&str, bool)] = &[
    ("docker", cfg!(feature = "docker")),
    ("podman", cfg!(feature = "podman")),
    ("containerd", cfg!(feature = "containerd")),
    ("lxd", cfg!(feature = "lxd")),
];

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn every_compiled_in_backend_is_listed_once() {
        let names: Vec<&str> = PROVIDERS.iter().map(|p| p.info().name).collect();
        let expected: Vec<&str> = [
            cfg!(feature = "docker").then_some("docker"),
            cfg!(feature = "podman").then_some("podman"),
            cfg!(feature = "containerd").then_some("containerd"),
            cfg!(feature = "lxd").then_some("lxd"),
        ]
        .into_iter()
        .flatten()
        .collect();
        assert_eq!(names, expected);
    }

    #[test]
    fn every_backend_is_compiled_in_exactly_when_the_table_has_its_provider() {
        for (name, compiled_in) in BACKENDS {
            let listed = PROVIDERS.iter().any(|p| p.info().name == *name);
            assert_eq!(listed, *compiled_in, "{name}");
        }
        for provider in PROVIDERS {
            let name = provider.info().name;
            assert!(
                BACKENDS.contains(&(name, true)),
                "{name} is not in BACKENDS"
            );
        }
    }

    #[test]
    fn names_environment_variables_and_keys_are_unique() {
        let mut names = HashSet::new();
        let mut vars = HashSet::new();
        for provider in PROVIDERS {
            let info = provider.info();
            assert!(names.insert(info.name), "{} twice", info.name);
            assert!(
                !["auto", "name"].contains(&info.name),
                "`{}` is a word of the `engine:` setting itself",
                info.name
            );
            let mut keys = HashSet::new();
            for setting in info.settings() {
                assert!(keys.insert(setting.key), "{}.{}", info.name, setting.key);
            }
            let env = info.settings().filter_map(|s| s.env);
            for var in env.chain(info.other_env.iter().copied()) {
                assert!(vars.insert(var), "{var} is read by two engines");
            }
        }
    }
}
