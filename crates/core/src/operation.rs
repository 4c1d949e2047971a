//! What an engine was doing when it failed; every backend tags its errors with one (`Error::with_operation`).

/// An engine operation, as errors name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// Reaching the engine and asking what it is.
    Connect,
    /// Building an image.
    Build,
    /// Pushing an image to a registry.
    Push,
    /// Pulling an image from a registry.
    Pull,
    /// Reading a local image's details.
    Inspect,
    /// Adding a name to a local image.
    Tag,
    /// Removing a local image or name.
    Remove,
}

impl Operation {
    /// The operation's name in messages: `connect`, `build`, `push`...
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Connect => "connect",
            Operation::Build => "build",
            Operation::Push => "push",
            Operation::Pull => "pull",
            Operation::Inspect => "inspect",
            Operation::Tag => "tag",
            Operation::Remove => "remove",
        }
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Lets [`crate::Error::with_operation`] take an [`Operation`] as it is, so engine code names its operation
/// by the type rather than by a string that may drift.
impl From<Operation> for String {
    fn from(operation: Operation) -> String {
        operation.as_str().to_string()
    }
}
