fn main() {
    for crd in kuberay::api::crd::crds() {
        println!("---\n{}", serde_saphyr::to_string(&crd).unwrap_or_default());
    }
}
