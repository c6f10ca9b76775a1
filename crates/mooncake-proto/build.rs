fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "../../proto/mooncake.proto";
    let tier = "../../proto/tier.proto";
    println!("cargo:rerun-if-changed={proto}");
    println!("cargo:rerun-if-changed={tier}");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_protos(&[proto, tier], &["../../proto"])?;
    Ok(())
}
