//! The committed CRD YAML must be what the Rust types generate: run `make crds` after changing a type.

#[test]
fn committed_yaml_matches_the_types() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("generated");
    for (file, crd) in weft_crds::all() {
        let expected = weft_crds::to_yaml(&crd).expect("CRD serialises");
        let committed = std::fs::read_to_string(dir.join(file))
            .unwrap_or_else(|e| panic!("crds/generated/{file} is missing ({e}): run `make crds`"));
        assert!(
            committed == expected,
            "crds/generated/{file} is stale: run `make crds` and commit the result"
        );
    }
}

#[test]
fn generated_kustomization_lists_every_crd() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("generated");
    let kustomization =
        std::fs::read_to_string(dir.join("kustomization.yaml")).expect("kustomization.yaml");
    for (file, _) in weft_crds::all() {
        assert!(
            kustomization.contains(file),
            "crds/generated/kustomization.yaml does not list {file}"
        );
    }
}
