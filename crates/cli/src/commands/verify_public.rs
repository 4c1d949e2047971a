//! `berth verify-public`: can a client without credentials pull each image? The cluster that runs the tasks
//! usually pulls without the builder's credentials, so an image that is in the registry may still not run there.
//! `berth build --verify-public` asks the same question about the images it pushed, through [`verify_all`].

use berth_core::reference::ImageRef;
use berth_core::Result;
use berth_registry::{PublicAccess, Refusal};

use super::access::Registries;
use super::exists::CONCURRENCY;
use crate::args::VerifyPublicArgs;
use crate::exit::ExitStatus;

/// One image and what an anonymous client was told about it.
struct Entry {
    image: ImageRef,
    access: PublicAccess,
}

/// Whether an anonymous client can pull each of a list of images, in the order asked.
pub struct PublicReport {
    entries: Vec<Entry>,
}

/// Asks each image's registry, as a client without any credentials would (`registries`' insecure-registry and
/// CA settings apply; its credentials are never sent), whether the image can be pulled. Pass references pinned
/// to the pushed digest (`name:tag@sha256:...`) to check exactly what was pushed.
pub async fn verify_all(registries: &Registries, images: &[ImageRef]) -> PublicReport {
    let answers = registries
        .client
        .pull_check_anonymous_many(images, CONCURRENCY)
        .await;
    let entries = images
        .iter()
        .cloned()
        .zip(answers)
        .map(|(image, access)| Entry { image, access })
        .collect();
    PublicReport { entries }
}

impl PublicReport {
    /// 0 when every image is public, 1 when some is private or not found, 2 ([`ExitStatus::CouldNotTell`]) when
    /// some could not be told (that wins: a "no" next to an unanswered question is not the whole answer).
    pub fn status(&self) -> ExitStatus {
        let mut status = ExitStatus::Success;
        for entry in &self.entries {
            match entry.access {
                PublicAccess::Public { .. } => {}
                PublicAccess::Unknown(_) => return ExitStatus::CouldNotTell,
                PublicAccess::Private { .. } | PublicAccess::NotFound { .. } => {
                    status = ExitStatus::Failure;
                }
            }
        }
        status
    }

    /// One line, e.g. `verify-public: 1 of 2 images can be pulled without credentials`.
    pub fn summary(&self) -> String {
        let public = self.entries.iter().filter(|e| e.access.is_public()).count();
        let total = self.entries.len();
        let plural = if total == 1 { "image" } else { "images" };
        format!("verify-public: {public} of {total} {plural} can be pulled without credentials")
    }

    /// Writes to standard error, for each image an anonymous client cannot pull (or that could not be checked),
    /// what the registry said and what to do about it, then the [`PublicReport::summary`].
    pub fn explain(&self) {
        for entry in &self.entries {
            if let Some(text) = explanation(entry) {
                eprintln!("{text}");
            }
        }
        eprintln!("{}", self.summary());
    }

    /// One tab-separated line per image on standard output: `IMAGE\tpublic\tDIGEST`, `IMAGE\tprivate`,
    /// `IMAGE\tnot-found`, `IMAGE\tunknown\tKIND`.
    fn print_lines(&self) {
        for entry in &self.entries {
            let state = entry.access.as_str();
            match &entry.access {
                PublicAccess::Public { digest } => println!("{}\t{state}\t{digest}", entry.image),
                PublicAccess::Unknown(error) => {
                    println!("{}\t{state}\t{}", entry.image, error.kind().as_str())
                }
                _ => println!("{}\t{state}", entry.image),
            }
        }
    }

    /// A JSON array of `{"image", "status", "digest", "detail", "error", "fix"}` objects.
    fn json(&self) -> serde_json::Value {
        let items =
            self.entries
                .iter()
                .map(|entry| {
                    let (detail, error) = match &entry.access {
                        PublicAccess::Private { detail, .. }
                        | PublicAccess::NotFound { detail } => (Some(detail.clone()), None),
                        PublicAccess::Unknown(error) => (None, Some(error.to_string())),
                        PublicAccess::Public { .. } => (None, None),
                    };
                    serde_json::json!({
                        "image": entry.image.to_string(),
                        "status": entry.access.as_str(),
                        "digest": entry.access.digest(),
                        "detail": detail,
                        "error": error,
                        "fix": entry.access.advice(&entry.image),
                    })
                })
                .collect();
        serde_json::Value::Array(items)
    }
}

/// What standard error says about one image: nothing when it is public.
fn explanation(entry: &Entry) -> Option<String> {
    let what = match &entry.access {
        PublicAccess::Public { .. } => return None,
        PublicAccess::Unknown(error) => {
            // the error's own hint says what to do
            return Some(format!(
                "{}: could not tell whether a client without credentials can pull it: {error}",
                entry.image
            ));
        }
        PublicAccess::Private {
            refusal: Refusal::Refused,
            detail,
        } => format!("a client without credentials cannot pull it: {detail}"),
        PublicAccess::Private {
            refusal: Refusal::NotFoundOrPrivate,
            detail,
        } => {
            format!("not found or private (a client without credentials cannot pull it): {detail}")
        }
        PublicAccess::NotFound { detail } => {
            format!("not found by a client without credentials: {detail}")
        }
    };
    let fix = entry.access.advice(&entry.image).unwrap_or_default();
    Some(format!("{}: {what}\n  fix: {fix}", entry.image))
}

/// An image reference from the command line; a spec file given by mistake is refused with the two ways to
/// check the image it names.
fn image_argument(text: &str) -> Result<ImageRef> {
    let path = std::path::Path::new(text);
    let looks_like_spec = text.ends_with(".yaml") || text.ends_with(".yml") || path.is_file();
    if looks_like_spec {
        return Err(berth_core::Error::invalid(format!(
            "`{text}` is a spec file; verify-public takes image references"
        ))
        .with_hint(format!(
            "check the image the spec names with `berth verify-public $(berth name {text})`, or build and check \
             in one go with `berth build --verify-public {text}`"
        )));
    }
    ImageRef::parse(text)
}

/// Runs `berth verify-public`.
pub async fn run(args: &VerifyPublicArgs) -> Result<ExitStatus> {
    let images = args
        .images
        .iter()
        .map(|text| image_argument(text))
        .collect::<Result<Vec<_>>>()?;
    let registries = super::access::registries(&args.registry)?;
    let report = verify_all(&registries, &images).await;
    if args.json {
        println!("{}", report.json());
    } else {
        report.print_lines();
    }
    report.explain();
    Ok(report.status())
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::{Error, ErrorKind};

    fn report(answers: Vec<PublicAccess>) -> PublicReport {
        let entries = answers
            .into_iter()
            .enumerate()
            .map(|(n, access)| Entry {
                image: ImageRef::parse(&format!("ghcr.io/acme/app:{n}")).expect("reference"),
                access,
            })
            .collect();
        PublicReport { entries }
    }

    fn public() -> PublicAccess {
        PublicAccess::Public {
            digest: format!("sha256:{}", "a".repeat(64)),
        }
    }

    fn private() -> PublicAccess {
        PublicAccess::Private {
            refusal: Refusal::Refused,
            detail: "HTTP 401".into(),
        }
    }

    fn unknown() -> PublicAccess {
        PublicAccess::Unknown(Error::new(ErrorKind::Unavailable, "HTTP 503").with_hint("try later"))
    }

    #[test]
    fn status_is_0_all_public_1_some_refused_2_some_unanswered() {
        assert_eq!(
            report(vec![public(), public()]).status(),
            ExitStatus::Success
        );
        let missing = PublicAccess::NotFound {
            detail: "HTTP 404".into(),
        };
        assert_eq!(
            report(vec![public(), missing]).status(),
            ExitStatus::Failure
        );
        assert_eq!(
            report(vec![private(), public()]).status(),
            ExitStatus::Failure
        );
        assert_eq!(
            report(vec![private(), unknown(), public()]).status(),
            ExitStatus::CouldNotTell
        );
        assert_eq!(
            report(vec![private(), public()]).summary(),
            "verify-public: 1 of 2 images can be pulled without credentials"
        );
    }

    #[test]
    fn explanations_say_why_and_what_to_do() {
        let r = report(vec![public(), private(), unknown()]);
        assert_eq!(explanation(&r.entries[0]), None);
        let private = explanation(&r.entries[1]).expect("explained");
        assert!(
            private.starts_with("ghcr.io/acme/app:1: a client without credentials cannot pull it: HTTP 401\n  fix: make the package public"),
            "{private}"
        );
        let unknown = explanation(&r.entries[2]).expect("explained");
        assert!(
            unknown.contains("could not tell") && unknown.contains("hint: try later"),
            "{unknown}"
        );
        let json = r.json();
        assert_eq!(json[0]["status"], "public");
        assert_eq!(json[0]["fix"], serde_json::Value::Null);
        assert_eq!(json[1]["status"], "private");
        assert_eq!(json[1]["detail"], "HTTP 401");
        assert_eq!(json[2]["status"], "unknown");
        assert_eq!(json[2]["fix"], "try later");
    }
}
