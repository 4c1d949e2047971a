//! One registry client per run: given the front end's client through the provider's shared services, the
//! engine's pulls and pushes reuse it (one `/v2/` check, one token cache, credential helpers run once) instead
//! of making a client per operation. Counted with a harmless fault proxy in front of the test registry.

use berth_backend_containerd::PROVIDER;
use berth_core::engine::{NoProgress, RemoveOptions, TransferOptions};
use berth_core::provider::{ConnectSettings, EngineProvider, Shared};
use berth_registry::{CredentialResolver, RegistryClient, RegistryOptions};
use berth_tests::env::TestEnv;
use berth_tests::faults::{Class, Fault, FaultPlan, FaultProxy};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_and_pushes_share_the_front_ends_registry_client() {
    let Some(env) = TestEnv::for_engine("containerd") else {
        return;
    };
    let counter = FaultPlan {
        fault: Fault::ServerError,
        class: Class::Ping,
        times: 0,
    };
    let proxy = FaultProxy::start(&env.registry, counter)
        .await
        .expect("proxy starts");
    let host = proxy.host();
    let credentials = berth_core::engine::Credentials {
        registry: host.clone(),
        ..env.credentials()
    };
    let client = RegistryClient::new(RegistryOptions {
        credentials: CredentialResolver::with_vars(Default::default())
            .with_credentials(credentials),
        ..RegistryOptions::default()
    })
    .expect("client");
    let settings = ConnectSettings::default()
        .set("address", env.containerd_address.display().to_string())
        .sharing(Shared::default().with(client));
    let engine = PROVIDER
        .connect(&settings)
        .await
        .unwrap_or_else(|e| panic!("run scripts/env/up.sh first: {e}"));

    let source = env.busybox_image.replacen(&env.registry, &host, 1);
    let target = format!("{host}/berth-shared-client/run-{}:v1", std::process::id());
    // no credentials in the options: the shared client's resolver has them, as the CLI's does
    let options = TransferOptions {
        credentials: None,
        insecure: true,
    };
    let steps = async {
        engine.pull(&source, &options, &NoProgress).await?;
        engine.tag(&source, &target).await?;
        engine.push(&target, &options, &NoProgress).await?;
        engine.pull(&target, &options, &NoProgress).await
    }
    .await;
    for reference in [&target, &source] {
        let _ = engine.remove(reference, RemoveOptions::default()).await;
    }
    steps.unwrap_or_else(|e| panic!("pull, push and pull through {host}: {e}"));
    assert_eq!(
        proxy.seen(),
        1,
        "two pulls and a push through one shared client check the registry's /v2/ once"
    );
}
