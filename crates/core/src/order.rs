//! Build order for specs whose bases are other specs: every base before the specs built on it, each spec once.

use std::collections::HashSet;
use std::path::PathBuf;

use crate::spec::{BaseImage, ImageSpec};

/// The specs to consider, bases first, each spec file once (first occurrence wins).
pub fn build_order(specs: &[ImageSpec]) -> Vec<&ImageSpec> {
    let mut seen: HashSet<PathBuf> = HashSet::new();
    let mut order = Vec::new();
    for spec in specs {
        visit(spec, &mut seen, &mut order);
    }
    order
}

fn visit<'a>(spec: &'a ImageSpec, seen: &mut HashSet<PathBuf>, order: &mut Vec<&'a ImageSpec>) {
    if let Some(BaseImage::Spec(base)) = &spec.base_image {
        visit(base, seen, order);
    }
    let key = spec
        .file
        .canonicalize()
        .unwrap_or_else(|_| spec.file.clone());
    if seen.insert(key) {
        order.push(spec);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::load_spec;

    #[test]
    fn bases_come_first_and_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        let write =
            |name: &str, text: &str| std::fs::write(dir.path().join(name), text).expect("write");
        write("base.yaml", "name: base\n");
        write("a.yaml", "name: a\nbase_image: {spec: base.yaml}\n");
        write("b.yaml", "name: b\nbase_image: {spec: base.yaml}\n");
        let specs: Vec<_> = ["a.yaml", "b.yaml", "base.yaml"]
            .iter()
            .map(|f| load_spec(&dir.path().join(f)).expect("loads"))
            .collect();
        let names: Vec<&str> = build_order(&specs)
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(names, ["base", "a", "b"]);
    }
}
