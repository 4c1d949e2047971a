//! What to do when an anonymous client cannot pull an image: where the registry at hand keeps a repository's
//! visibility, or why it has none, and the alternative every registry has (give the puller credentials).

use berth_core::reference::ImageRef;

use crate::credentials::is_docker_hub;
use crate::public::{PublicAccess, Refusal};

/// The alternative to making an image public, on any registry.
const PULL_SECRET: &str = "give the cluster pull credentials (a Kubernetes imagePullSecret)";

impl PublicAccess {
    /// What to do so that an anonymous client can pull `image`, for messages; `None` when it already can.
    pub fn advice(&self, image: &ImageRef) -> Option<String> {
        match self {
            PublicAccess::Public { .. } => None,
            PublicAccess::Private {
                refusal: Refusal::Refused,
                ..
            } => Some(make_public(image)),
            PublicAccess::Private {
                refusal: Refusal::NotFoundOrPrivate,
                ..
            } => Some(format!(
                "{} answers \"not found\" both for images that do not exist and for private ones: check the name \
                 and tag; if the image exists, {}",
                image.registry,
                make_public(image)
            )),
            PublicAccess::NotFound { .. } => Some(format!(
                "{} has no such image: check the name and tag, and that the push finished",
                image.registry
            )),
            PublicAccess::Unknown(error) => error.hint().map(str::to_string),
        }
    }
}

/// Where `image`'s registry lets its owner allow anonymous pulls, tailored by registry host.
pub fn make_public(image: &ImageRef) -> String {
    let host = image.registry.to_ascii_lowercase();
    let repo = image.repository.as_str();
    let (namespace, name) = repo.split_once('/').unwrap_or(("", repo));
    if host == "ghcr.io" {
        let package = name.replace('/', "%2F");
        return format!(
            "make the package public: in its settings (https://github.com/users/{namespace}/packages/container/\
             {package}/settings for a user's package, https://github.com/orgs/{namespace}/packages/container/\
             {package}/settings for an organization's) choose \"Change visibility\" and then Public (an \
             organization may have to allow public packages in its own settings first); or {PULL_SECRET} with \
             a token that can read packages"
        );
    }
    if is_docker_hub(&host) {
        if namespace == "library" {
            return format!(
                "official images (docker.io/library/...) are always public, so this one does not exist: check \
                 the name and tag of {image}"
            );
        }
        return format!(
            "make the repository public: on https://hub.docker.com/repository/docker/{namespace}/{name}/settings \
             choose \"Make public\" under Visibility settings; or {PULL_SECRET}"
        );
    }
    if host == "quay.io" {
        return format!(
            "make the repository public: on https://quay.io/repository/{namespace}/{name}?tab=settings choose \
             \"Make Public\" under Repository Visibility; or {PULL_SECRET}"
        );
    }
    if let Some(location) = host.strip_suffix("-docker.pkg.dev") {
        let mut parts = repo.splitn(3, '/');
        let project = parts.next().unwrap_or_default();
        let repository = parts.next().unwrap_or_default();
        return format!(
            "let anyone read the Artifact Registry repository: `gcloud artifacts repositories \
             add-iam-policy-binding {repository} --project={project} --location={location} --member=allUsers \
             --role=roles/artifactregistry.reader`; or {PULL_SECRET}"
        );
    }
    if host == "gcr.io" || host.ends_with(".gcr.io") {
        let (location, bucket) = match host.as_str() {
            "eu.gcr.io" => ("europe", "eu.artifacts"),
            "asia.gcr.io" => ("asia", "asia.artifacts"),
            "us.gcr.io" => ("us", "us.artifacts"),
            _ => ("us", "artifacts"),
        };
        return format!(
            "let anyone read the repository: where {host} is served by Artifact Registry, `gcloud artifacts \
             repositories add-iam-policy-binding {host} --project={namespace} --location={location} \
             --member=allUsers --role=roles/artifactregistry.reader`; on the older Container Registry, `gsutil \
             iam ch allUsers:objectViewer gs://{bucket}.{namespace}.appspot.com` (roles/storage.objectViewer); \
             or {PULL_SECRET}"
        );
    }
    if host == "public.ecr.aws" {
        return format!(
            "ECR Public repositories are always public, so this image does not exist: check the registry alias, \
             name and tag of {image}"
        );
    }
    if host.contains(".dkr.ecr.")
        && (host.ends_with(".amazonaws.com") || host.ends_with(".amazonaws.com.cn"))
    {
        return format!(
            "a private Amazon ECR repository cannot allow anonymous pulls: push the image to an ECR Public \
             repository (public.ecr.aws) instead, or {PULL_SECRET}; on EKS, the nodes' IAM role with \
             AmazonEC2ContainerRegistryReadOnly pulls from ECR without a secret"
        );
    }
    format!("{PULL_SECRET}, or make the repository public in your registry's settings")
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::Error;

    fn advice(reference: &str) -> String {
        make_public(&ImageRef::parse(reference).expect("reference"))
    }

    #[test]
    fn ghcr_points_at_the_package_settings_for_users_and_organizations() {
        let text = advice("ghcr.io/acme/tools/app:1");
        assert!(
            text.contains("https://github.com/users/acme/packages/container/tools%2Fapp/settings"),
            "{text}"
        );
        assert!(
            text.contains("https://github.com/orgs/acme/packages/container/tools%2Fapp/settings"),
            "{text}"
        );
        assert!(text.contains("Change visibility"), "{text}");
    }

    #[test]
    fn docker_hub_under_any_name_points_at_the_repository_settings() {
        for reference in [
            "me/app:1",
            "docker.io/me/app:1",
            "registry-1.docker.io/me/app:1",
            "index.docker.io/me/app:1",
        ] {
            let text = advice(reference);
            assert!(
                text.contains("https://hub.docker.com/repository/docker/me/app/settings"),
                "{reference}: {text}"
            );
        }
        assert!(advice("busybox:1").contains("always public"));
    }

    #[test]
    fn quay_google_and_ecr_each_say_their_own_way() {
        assert!(advice("quay.io/team/app:1")
            .contains("https://quay.io/repository/team/app?tab=settings"));
        let pkg = advice("europe-west1-docker.pkg.dev/my-proj/my-repo/app:1");
        assert!(
            pkg.contains("add-iam-policy-binding my-repo --project=my-proj --location=europe-west1 --member=allUsers --role=roles/artifactregistry.reader"),
            "{pkg}"
        );
        let gcr = advice("eu.gcr.io/my-proj/app:1");
        assert!(gcr.contains("--location=europe"), "{gcr}");
        assert!(
            gcr.contains("allUsers:objectViewer gs://eu.artifacts.my-proj.appspot.com"),
            "{gcr}"
        );
        let ecr = advice("123456789012.dkr.ecr.eu-west-1.amazonaws.com/app:1");
        assert!(
            ecr.contains("cannot allow anonymous pulls") && ecr.contains("public.ecr.aws"),
            "{ecr}"
        );
        assert!(advice("public.ecr.aws/alias/app:1").contains("always public"));
    }

    #[test]
    fn other_registries_get_the_general_advice() {
        assert_eq!(
            advice("registry.example.com:8443/team/app:1"),
            "give the cluster pull credentials (a Kubernetes imagePullSecret), or make the repository public in \
             your registry's settings"
        );
    }

    #[test]
    fn advice_follows_the_answer() {
        let image = ImageRef::parse("ghcr.io/acme/app:1").expect("reference");
        let public = PublicAccess::Public {
            digest: "sha256:00".into(),
        };
        assert_eq!(public.advice(&image), None);
        let hidden = PublicAccess::Private {
            refusal: Refusal::NotFoundOrPrivate,
            detail: "HTTP 404".into(),
        };
        let text = hidden.advice(&image).expect("advice");
        assert!(
            text.starts_with("ghcr.io answers \"not found\" both for")
                && text.contains("Change visibility"),
            "{text}"
        );
        let missing = PublicAccess::NotFound {
            detail: "HTTP 404".into(),
        };
        assert!(missing
            .advice(&image)
            .expect("advice")
            .contains("check the name and tag"));
        let unknown = PublicAccess::Unknown(Error::invalid("x").with_hint("try again later"));
        assert_eq!(unknown.advice(&image).as_deref(), Some("try again later"));
    }
}
