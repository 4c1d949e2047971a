//! The image config as a plan's steps change it: ENV (with `$NAME` expansion), WORKDIR, USER, ENTRYPOINT, SHELL,
//! LABEL, the environment a RUN step sees, and one history entry per step. For engines that execute a plan
//! themselves (containerd, LXD) rather than hand a Dockerfile to a builder.

use std::path::{Component, Path, PathBuf};

use serde_json::{json, Map, Value};

use crate::plan::Step;

/// The strings of a JSON array (others skipped).
pub fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

/// `path` resolved against `dir` inside the image, as an absolute path (`..` cannot leave the root).
pub fn normalize(dir: &Path, path: &str) -> String {
    let joined = if path.starts_with('/') {
        PathBuf::from(path)
    } else {
        dir.join(path)
    };
    let mut out = PathBuf::new();
    for component in joined.components() {
        match component {
            Component::Normal(c) => out.push(c),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    format!("/{}", out.display())
}

/// Docker's PATH when an image sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The `config` object of an image config, and the build's own state (shell, history).
#[derive(Debug, Clone)]
pub struct ImageConfig {
    config: Map<String, Value>,
    shell: Vec<String>,
    history: Vec<Value>,
}

impl ImageConfig {
    /// Applies a config step (ENV, WORKDIR, USER, ENTRYPOINT, SHELL, LABEL); `false` for RUN and COPY, which
    /// change the filesystem instead.
    pub fn apply(&mut self, step: &Step) -> bool {
        match step {
            Step::Env(vars) => self.set_env(vars),
            Step::Workdir(dir) => self.set_workdir(dir),
            Step::User(user) => self.set_user(user),
            Step::Entrypoint(args) => self.set_entrypoint(args),
            Step::Shell(args) => self.set_shell(args),
            Step::Label(labels) => self.set_labels(labels),
            Step::Run(_) | Step::Copy(_) => return false,
        }
        true
    }

    /// The config of the base image (`config_json` is the whole config blob).
    pub fn from_base(config_json: &Value) -> ImageConfig {
        let config = config_json["config"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let shell = match strings(&config_json["config"]["Shell"]) {
            s if s.is_empty() => vec!["/bin/sh".to_string(), "-c".to_string()],
            s => s,
        };
        ImageConfig {
            config,
            shell,
            history: config_json["history"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
        }
    }

    /// `NAME=value` pairs.
    pub fn env(&self) -> Vec<String> {
        strings(&self.config.get("Env").cloned().unwrap_or(Value::Null))
    }

    /// The value of variable `name`, if set.
    pub fn lookup(&self, name: &str) -> Option<String> {
        self.env().into_iter().find_map(|e| {
            e.split_once('=')
                .filter(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    }

    /// Sets variables; values are expanded against the environment before this step, as Dockerfile ENV does.
    pub fn set_env(&mut self, vars: &[(String, String)]) {
        let expanded: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.clone(), self.expand(v)))
            .collect();
        let mut env = self.env();
        for (key, value) in expanded {
            let entry = format!("{key}={value}");
            match env
                .iter_mut()
                .find(|e| e.split_once('=').is_some_and(|(k, _)| k == key))
            {
                Some(slot) => *slot = entry,
                None => env.push(entry),
            }
        }
        self.config.insert("Env".into(), json!(env));
    }

    /// `$NAME` and `${NAME}` replaced by their values (unset: empty); `\$` is a literal `$`.
    pub fn expand(&self, value: &str) -> String {
        let mut out = String::new();
        let mut chars = value.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\\' if chars.peek() == Some(&'$') => {
                    out.push('$');
                    chars.next();
                }
                '$' => {
                    let braced = chars.peek() == Some(&'{');
                    if braced {
                        chars.next();
                    }
                    let mut name = String::new();
                    while let Some(&n) = chars.peek() {
                        if n.is_ascii_alphanumeric() || n == '_' {
                            name.push(n);
                            chars.next();
                        } else {
                            break;
                        }
                    }
                    if braced {
                        if chars.peek() == Some(&'}') {
                            chars.next();
                        }
                    } else if name.is_empty() {
                        out.push('$');
                        continue;
                    }
                    out.push_str(&self.lookup(&name).unwrap_or_default());
                }
                c => out.push(c),
            }
        }
        out
    }

    /// The working directory (default `/`).
    pub fn workdir(&self) -> String {
        match self.config.get("WorkingDir").and_then(Value::as_str) {
            Some(dir) if !dir.is_empty() => dir.to_string(),
            _ => "/".to_string(),
        }
    }

    /// Sets the working directory; a relative one is relative to the current one.
    pub fn set_workdir(&mut self, dir: &str) {
        let dir = normalize(std::path::Path::new(&self.workdir()), &self.expand(dir));
        self.config.insert("WorkingDir".into(), json!(dir));
    }

    /// The user (empty: root).
    pub fn user(&self) -> String {
        self.config
            .get("User")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    }

    /// Sets the user (expanded).
    pub fn set_user(&mut self, user: &str) {
        let user = self.expand(user);
        self.config.insert("User".into(), json!(user));
    }

    /// Sets the entrypoint (empty clears it); like Docker, an inherited CMD is dropped with it.
    pub fn set_entrypoint(&mut self, args: &[String]) {
        let value = if args.is_empty() {
            Value::Null
        } else {
            json!(args)
        };
        self.config.insert("Entrypoint".into(), value);
        self.config.insert("Cmd".into(), Value::Null);
    }

    /// The shell RUN steps use (default `/bin/sh -c`).
    pub fn shell(&self) -> &[String] {
        &self.shell
    }

    /// Sets the shell RUN steps use.
    pub fn set_shell(&mut self, args: &[String]) {
        self.shell = args.to_vec();
        self.config.insert("Shell".into(), json!(args));
    }

    /// Adds labels (keys and values expanded).
    pub fn set_labels(&mut self, labels: &[(String, String)]) {
        let mut map = self
            .config
            .get("Labels")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        for (k, v) in labels {
            map.insert(self.expand(k), json!(self.expand(v)));
        }
        self.config.insert("Labels".into(), Value::Object(map));
    }

    /// The environment a RUN step runs with: the image's, with Docker's PATH when it has none, and HOME.
    pub fn run_env(&self, home: &str) -> Vec<String> {
        let mut env = self.env();
        if self.lookup("PATH").is_none() {
            env.push(format!("PATH={DEFAULT_PATH}"));
        }
        if self.lookup("HOME").is_none() {
            env.push(format!("HOME={home}"));
        }
        env
    }

    /// Records a history entry for a step.
    pub fn history(&mut self, created: &str, created_by: &str, empty_layer: bool) {
        let mut entry = json!({"created": created, "created_by": created_by, "comment": "berth"});
        if empty_layer {
            entry["empty_layer"] = json!(true);
        }
        self.history.push(entry);
    }

    /// A text identifying everything a RUN step's behaviour depends on in the config (for the step cache).
    pub fn run_identity(&self) -> String {
        json!({
            "env": self.env(),
            "workdir": self.workdir(),
            "user": self.user(),
            "shell": self.shell,
        })
        .to_string()
    }

    /// The whole config blob: the base's, with this config, `diff_ids` and the history.
    pub fn to_blob(&self, base: &Value, diff_ids: &[String], created: &str) -> Value {
        let mut blob = base.as_object().cloned().unwrap_or_default();
        for docker_only in ["container", "container_config", "id", "parent"] {
            blob.remove(docker_only);
        }
        blob.insert("created".into(), json!(created));
        blob.insert("config".into(), Value::Object(self.config.clone()));
        blob.insert(
            "rootfs".into(),
            json!({"type": "layers", "diff_ids": diff_ids}),
        );
        blob.insert("history".into(), Value::Array(self.history.clone()));
        Value::Object(blob)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_values_expand_against_earlier_values() {
        let mut c = ImageConfig::from_base(&json!({"config": {"Env": ["PATH=/bin"]}}));
        c.set_env(&[("A".into(), "alpha".into())]);
        c.set_env(&[
            ("B".into(), "$A-beta".into()),
            ("PATH".into(), "/x:${PATH}".into()),
            ("C".into(), "\\$A cost $".into()),
        ]);
        assert_eq!(
            c.env(),
            vec!["PATH=/x:/bin", "A=alpha", "B=alpha-beta", "C=$A cost $"]
        );
    }

    #[test]
    fn workdir_is_relative_to_the_last() {
        let mut c = ImageConfig::from_base(&json!({}));
        c.set_workdir("/srv");
        c.set_workdir("app");
        assert_eq!(c.workdir(), "/srv/app");
        assert!(c.run_env("/root").iter().any(|e| e.starts_with("PATH=")));
    }
}
