//! Generates the tonic example's protobuf code without `protoc`.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let fds = protox::compile([proto_dir.join("greeter.proto")], [&proto_dir])?;
    std::fs::write(proto_dir.join("greeter_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .out_dir(&proto_dir)
        .compile_fds(fds)?;
    println!("wrote greeter.v1.rs and greeter_descriptor.bin in {}", proto_dir.display());
    Ok(())
}
