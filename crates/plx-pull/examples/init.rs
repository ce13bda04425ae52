//! Pulls the `init:` section of a Polyaxon operation, as plx-init does, with the pod's catalog
//! (`POLYAXON_CONNECTIONS_CATALOG`): `cargo run -p plx-pull --example init -- polyaxonfile.yaml`.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let file = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "polyaxonfile.yaml".to_owned());
    let env = plx_credentials::Environment::from_process();
    let catalog = plx_pull::catalog::load(None, &env)?;
    let puller = plx_pull::Puller::new(&catalog, &env);
    for entry in plx_pull::catalog::read_init(file.as_ref(), &catalog)? {
        let pulled = puller
            .init(&entry, &plx_pull::Options::default(), &None)
            .await?;
        println!("{}", serde_json::to_string(&pulled.record())?);
    }
    Ok(())
}
