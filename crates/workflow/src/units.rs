//! The distinct images of a run: every spec named once, bases before the images built on them, each image
//! once however many specs, project entries or tasks lead to it (identical content gives an identical name).

use std::collections::HashMap;

use berth_core::spec::{BaseImage, ImageSpec};
use berth_core::tag::{ImageName, Namer};
use berth_core::Result;

/// One image to check and perhaps build.
#[derive(Debug, Clone)]
pub struct Unit {
    /// Its spec (the first that named it).
    pub spec: ImageSpec,
    /// Its full name.
    pub name: ImageName,
    /// The unit it is built on, when its base is another spec.
    pub base: Option<usize>,
    /// What asked for it: project image names, or spec files.
    pub wanted_by: Vec<String>,
}

/// The units of `specs` (each with a label saying what asked for it), bases first.
pub fn units(namer: &Namer, specs: &[(String, &ImageSpec)]) -> Result<Vec<Unit>> {
    let mut units: Vec<Unit> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for (label, spec) in specs {
        let at = visit(namer, spec, &mut units, &mut index)?;
        if !units[at].wanted_by.contains(label) {
            units[at].wanted_by.push(label.clone());
        }
    }
    Ok(units)
}

fn visit(
    namer: &Namer,
    spec: &ImageSpec,
    units: &mut Vec<Unit>,
    index: &mut HashMap<String, usize>,
) -> Result<usize> {
    let base = match &spec.base_image {
        Some(BaseImage::Spec(base)) => Some(visit(namer, base, units, index)?),
        _ => None,
    };
    let name = namer.image_name(spec)?;
    let key = name.to_string();
    if let Some(&at) = index.get(&key) {
        return Ok(at);
    }
    units.push(Unit {
        spec: spec.clone(),
        name,
        base,
        wanted_by: Vec::new(),
    });
    index.insert(key, units.len() - 1);
    Ok(units.len() - 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::spec::load_spec;

    #[test]
    fn bases_first_and_identical_specs_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        let write =
            |name: &str, text: &str| std::fs::write(dir.path().join(name), text).expect("write");
        write("base.yaml", "name: base\nregistry: r.example/x\n");
        write("same.yaml", "name: base\nregistry: r.example/x\n");
        write(
            "a.yaml",
            "name: a\nregistry: r.example/x\nbase_image: {spec: base.yaml}\n",
        );
        let load = |f: &str| load_spec(&dir.path().join(f)).expect("loads");
        let (a, base, same) = (load("a.yaml"), load("base.yaml"), load("same.yaml"));
        let specs = vec![
            ("a".to_string(), &a),
            ("base".to_string(), &base),
            ("same".to_string(), &same),
        ];
        let units = units(&Namer::new(None), &specs).expect("units");
        let names: Vec<&str> = units.iter().map(|u| u.name.name.as_str()).collect();
        assert_eq!(names, ["base", "a"]);
        assert_eq!(units[1].base, Some(0));
        assert_eq!(units[0].wanted_by, ["base", "same"]);
        assert_eq!(units[1].wanted_by, ["a"]);
    }
}
