//! `berth flytekit`: the flytekit plugin's way in. It reads an `ImageSpec` as flytekit holds it in the process that
//! runs pyflyte, as JSON, and names it, asks its registry for it, or builds and pushes it, with the same namer,
//! registry check, engine choice and build as `berth build`. The answer is one JSON object on standard output; a
//! failure is an `error` object (kind, message, hint) there too, so the plugin can raise one flytekit error carrying
//! berth's words. Progress goes to standard error (the terminal pyflyte runs in).
//!
//! `name`, `exists` and `build` answer one spec read from standard input. `serve` answers one request per line,
//! `ACTION [--force] SPEC-JSON` (e.g. `exists {"fields": ...}`), until standard input closes: the plugin keeps one berth for a whole pyflyte
//! run, so every check after the first reuses the registry connections and tokens instead of starting a process
//! and logging in again per image.

use std::io::{Read, Write};

use berth_core::reference::ImageRef;
use berth_core::spec::{load_flytekit_json, ImageSpec};
use berth_core::tag::Namer;
use berth_core::{Error, ErrorKind, Result};
use berth_registry::Existence;
use serde_json::{json, Value};

use std::sync::Arc;

use berth_workflow::{units, Context, IfUnknown, Outcome, RunOptions};

use super::access::{engine_registries, EngineChoice, Registries};
use crate::args::{FlytekitAction, FlytekitArgs};
use crate::config::Config;
use crate::exit::ExitStatus;
use crate::progress::RunOutput;

/// Runs `berth flytekit`; every failure is answered as JSON, so this never returns an error to `main`.
pub async fn run(args: &FlytekitArgs) -> Result<ExitStatus> {
    let mut session = Session::new(args);
    if args.action == FlytekitAction::Serve {
        return session.serve().await;
    }
    let answer = match read_stdin() {
        Ok(text) => session.answer(args.action, args.force, &text).await,
        Err(err) => Err(err),
    };
    let (status, answer) = as_json(answer);
    println!("{answer}");
    Ok(status)
}

fn read_stdin() -> Result<String> {
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text).map_err(|e| {
        Error::new(
            ErrorKind::Io,
            format!("cannot read the spec from standard input: {e}"),
        )
    })?;
    Ok(text)
}

fn as_json(answer: Result<(ExitStatus, Value)>) -> (ExitStatus, Value) {
    answer.unwrap_or_else(|err| {
        (
            ExitStatus::for_kind(err.kind()),
            json!({ "error": error_json(&err) }),
        )
    })
}

/// An error as the plugin shows it: berth's usual first line (engine, operation, message, kind) and its hint.
fn error_json(err: &Error) -> Value {
    let text = err.to_string();
    let message = match err.hint() {
        Some(hint) => text
            .strip_suffix(hint)
            .and_then(|t| t.strip_suffix("\n  hint: "))
            .unwrap_or(&text),
        None => &text,
    };
    json!({ "kind": err.kind().as_str(), "message": message, "hint": err.hint() })
}

/// What one run keeps between requests: the digest cache, the registry client (connections, tokens), the
/// engine choice.
struct Session<'a> {
    args: &'a FlytekitArgs,
    namer: Arc<Namer>,
    registries: Option<Arc<Registries>>,
    engine: Option<Arc<EngineChoice>>,
}

impl<'a> Session<'a> {
    fn new(args: &'a FlytekitArgs) -> Self {
        Session {
            args,
            namer: Arc::new(super::namer()),
            registries: None,
            engine: None,
        }
    }

    fn registries(&mut self) -> Result<&Registries> {
        if self.registries.is_none() {
            self.registries = Some(Arc::new(engine_registries(&self.args.engine)?));
        }
        Ok(self.registries.as_ref().expect("set above"))
    }

    /// Answers requests, one per line each way, until standard input closes.
    async fn serve(&mut self) -> Result<ExitStatus> {
        let io =
            |e: std::io::Error| Error::new(ErrorKind::Io, format!("berth flytekit serve: {e}"));
        loop {
            // A blocking read on its own thread: the runtime keeps watching for Ctrl-C meanwhile. (When the
            // plugin's process ends, standard input closes and the read returns.)
            let read = tokio::task::spawn_blocking(|| {
                let mut line = String::new();
                std::io::stdin().read_line(&mut line).map(|n| (n, line))
            })
            .await
            .map_err(|e| Error::new(ErrorKind::Io, format!("berth flytekit serve: {e}")))?;
            let (n, line) = read.map_err(io)?;
            if n == 0 {
                return Ok(ExitStatus::Success);
            }
            if line.trim().is_empty() {
                continue;
            }
            let (_, answer) = as_json(self.request(&line).await);
            let mut stdout = std::io::stdout().lock();
            writeln!(stdout, "{answer}").map_err(io)?;
            stdout.flush().map_err(io)?;
        }
    }

    async fn request(&mut self, line: &str) -> Result<(ExitStatus, Value)> {
        let bad = |m: &str| {
            Error::invalid(format!("berth flytekit serve: {m}")).with_hint(
                "the plugin and the berth binary come from the same package; reinstall it",
            )
        };
        let at = line
            .find('{')
            .ok_or_else(|| bad("expected `ACTION [--force] {spec}`"))?;
        let (words, spec) = line.split_at(at);
        let words: Vec<&str> = words.split_whitespace().collect();
        let (action, force) = match words.as_slice() {
            [action] => (*action, false),
            [action, "--force"] => (*action, true),
            _ => return Err(bad("expected `ACTION [--force] {spec}`")),
        };
        let action = match action {
            "name" => FlytekitAction::Name,
            "exists" => FlytekitAction::Exists,
            "build" => FlytekitAction::Build,
            _ => return Err(bad("the action is one of name, exists, build")),
        };
        self.answer(action, force, spec).await
    }

    async fn answer(
        &mut self,
        action: FlytekitAction,
        force: bool,
        text: &str,
    ) -> Result<(ExitStatus, Value)> {
        let cwd = std::env::current_dir().map_err(|e| {
            Error::new(
                ErrorKind::Io,
                format!("cannot read the working directory: {e}"),
            )
        })?;
        let spec = load_flytekit_json(text, &cwd)?;
        let name = self.namer.image_name(&spec)?;
        let image = name.to_string();
        match action {
            FlytekitAction::Name | FlytekitAction::Serve => {
                Ok((ExitStatus::Success, json!({ "image": image })))
            }
            FlytekitAction::Exists => {
                if name.registry.is_none() {
                    return Err(no_registry(&image));
                }
                let reference = ImageRef::parse(&image)?;
                match self.registries()?.client.exists(&reference).await {
                    Existence::Present { digest } => Ok((
                        ExitStatus::Success,
                        json!({ "image": image, "status": "present", "digest": digest }),
                    )),
                    Existence::Absent => Ok((
                        ExitStatus::Failure,
                        json!({ "image": image, "status": "absent", "digest": null }),
                    )),
                    Existence::Unknown(err) => Err(err),
                }
            }
            FlytekitAction::Build => self.build(&spec, &image, force).await,
        }
    }

    async fn build(
        &mut self,
        spec: &ImageSpec,
        image: &str,
        force: bool,
    ) -> Result<(ExitStatus, Value)> {
        if spec.registry.is_none() {
            return Err(no_registry(image));
        }
        if self.engine.is_none() {
            // The engine follows berth's usual precedence (BERTH_ENGINE, berth.yaml, the user file, detection);
            // the registry setting does not apply, since flytekit has named the image already.
            let config = Config::load()?;
            let choice = EngineChoice::with_config(&self.args.engine, &config)?;
            self.engine = Some(Arc::new(choice.sharing(self.registries()?)));
        }
        self.registries()?;
        let (Some(engine), Some(registries)) = (&self.engine, &self.registries) else {
            unreachable!("both set above");
        };
        let labelled = [(spec.display_path(), spec)];
        let units = units(&self.namer, &labelled)?;
        let options = RunOptions {
            force,
            no_push: false,
            if_unknown: IfUnknown::Fail,
            network: berth_core::engine::Network::Default,
            no_cache: false,
            jobs: 1,
            lock_dir: super::cache_dir(),
        };
        let context = Context {
            namer: self.namer.clone(),
            registries: registries.clone(),
            engine: engine.clone(),
            progress: Arc::new(RunOutput),
        };
        let outcome = berth_workflow::run(&units, &context, &options)
            .await?
            .pop()
            .expect("one unit, one outcome");
        match outcome {
            Outcome::Present { digest } => Ok(built(image, "present", &digest)),
            Outcome::Pushed { digest } => Ok(built(image, "pushed", &digest)),
            Outcome::Failed(err) | Outcome::Skipped(err) => Err(err),
            Outcome::Local => Err(no_registry(image)),
        }
    }
}

fn built(image: &str, status: &str, digest: &str) -> (ExitStatus, Value) {
    let reference = format!("{image}@{digest}");
    (
        ExitStatus::Success,
        json!({ "image": image, "status": status, "digest": digest, "reference": reference }),
    )
}

fn no_registry(image: &str) -> Error {
    Error::invalid(format!(
        "{image}: the ImageSpec names no registry, so berth cannot push it where a cluster finds it"
    ))
    .with_hint("set registry= in the ImageSpec, e.g. ImageSpec(registry=\"ghcr.io/my-org\", ...)")
}
