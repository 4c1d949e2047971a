//! Answers whose body breaks off (closed early, or silent past the request timeout) are temporary: the client
//! asks again and gets the manifest, through the fault proxy of berth-tests in front of the real registry.

mod common;

use std::time::Duration;

use berth_core::reference::ImageRef;
use berth_registry::{CredentialResolver, RegistryClient, RegistryOptions, RetryPolicy};
use berth_tests::faults::{Class, Fault, FaultPlan, FaultProxy};
use common::env;

async fn manifest_through(fault: Fault) -> (berth_core::Result<berth_registry::Manifest>, u32) {
    let env = common::TestEnv::get();
    let plan = FaultPlan {
        fault,
        class: Class::ManifestGet,
        times: 1,
    };
    let proxy = FaultProxy::start(&env.registry, plan)
        .await
        .expect("start the proxy");
    let credentials = berth_core::engine::Credentials {
        registry: proxy.host(),
        ..env.credentials()
    };
    let client = RegistryClient::new(RegistryOptions {
        credentials: CredentialResolver::with_vars(Default::default())
            .with_credentials(credentials),
        request_timeout: Duration::from_secs(2),
        retry: RetryPolicy {
            base_delay: Duration::from_millis(50),
            ..RetryPolicy::default()
        },
        ..RegistryOptions::default()
    })
    .expect("client");
    // the fixture's path, at the proxy's address
    let fixture = ImageRef::parse(&env.busybox_image).expect("fixture reference");
    let image = ImageRef {
        registry: proxy.host(),
        ..fixture
    };
    (client.get_manifest(&image).await, proxy.injected())
}

#[tokio::test]
async fn a_truncated_manifest_is_fetched_again() {
    if env().is_none() {
        return;
    }
    let (manifest, injected) = manifest_through(Fault::Truncated).await;
    assert_eq!(injected, 1);
    manifest.expect("the second answer is whole");
}

#[tokio::test]
async fn a_manifest_body_that_stalls_past_the_timeout_is_fetched_again() {
    if env().is_none() {
        return;
    }
    let (manifest, injected) = manifest_through(Fault::Stall).await;
    assert_eq!(injected, 1);
    manifest.expect("the second answer is whole");
}
