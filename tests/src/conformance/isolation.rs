//! What separates a RUN step from the host, checked from inside a step against what the engine declares in
//! [`Capabilities::run_isolation`](berth_core::engine::Capabilities): the declaration is what the README's table
//! and `berth engines --json` report, so it must be true on the real daemon.

use super::support::{build_ok, build_options, checks, image_ref, plan, run, unique, Cleanup};
use super::ContainerEngine;
use crate::env::TestEnv;

/// Behaviour 19: A RUN step (with the default network) has the isolation the engine declares: a seccomp filter
/// (`Seccomp: 2` in `/proc/self/status`) or none, `CAP_SYS_ADMIN` (bit 21 of `CapEff`) absent or present, a user
/// namespace (a `uid_map` other than the identity) or none, and the host's network namespace or another one.
/// What a filter refuses differs (buildah's lets a step create user namespaces, Docker's and berth's containerd
/// builder's do not), so only its presence is checked here. The step is new on every run, so no cached result
/// stands in for it.
pub async fn run_isolation_is_as_declared(engine: &dyn ContainerEngine, env: &TestEnv) {
    let info = engine
        .info()
        .await
        .unwrap_or_else(|e| panic!("{} info: {e}", engine.name()));
    let declared = info.capabilities.run_isolation;
    // the engine's host is this machine, or the remote host (its own network namespace) for a service there
    let host_net = match crate::remote::RemoteEnv::runs_on_remote_host(&info.endpoint) {
        true => crate::remote::RemoteEnv::get().network_namespace(),
        false => std::fs::read_link("/proc/self/ns/net")
            .expect("the test's own network namespace")
            .display()
            .to_string(),
    };
    let pick = |yes: bool, when_yes: &str, when_no: &str| {
        if yes {
            when_yes.to_string()
        } else {
            when_no.to_string()
        }
    };
    let conditions = [
        pick(
            declared.seccomp,
            "grep -Eq \"^Seccomp:[[:space:]]+2$\" /proc/self/status",
            "grep -Eq \"^Seccomp:[[:space:]]+0$\" /proc/self/status",
        ),
        format!(
            "cap=$(sed -n \"s/^CapEff:[[:space:]]*//p\" /proc/self/status) && [ $(( (0x$cap >> 21) & 1 )) -eq {} ]",
            u8::from(!declared.reduced_capabilities)
        ),
        pick(
            declared.user_namespace,
            "! grep -Eq \"^ +0 +0 +4294967295$\" /proc/self/uid_map",
            "grep -Eq \"^ +0 +0 +4294967295$\" /proc/self/uid_map",
        ),
        format!(
            "[ \"$(readlink /proc/self/ns/net)\" {} \"{host_net}\" ]",
            pick(declared.host_network_by_default, "=", "!=")
        ),
    ];
    let conditions: Vec<&str> = conditions.iter().map(String::as_str).collect();
    let observe = "grep -E \"^(Seccomp|CapEff):\" /proc/self/status; cat /proc/self/uid_map; \
                   readlink /proc/self/ns/net";
    let mut cleanup = Cleanup::new(engine, env);
    let tag = image_ref(env, "isolation", "v1");
    let plan = plan(
        &env.busybox_image,
        vec![run(format!(
            "{observe}; echo \"declared: {declared:?}, host network {host_net}, run {}\"; {}",
            unique("isolation"),
            checks(&conditions)
        ))],
    );
    build_ok(engine, &mut cleanup, &plan, &build_options(env, &tag)).await;
}
