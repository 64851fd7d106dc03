#![forbid(unsafe_code)]
fn main() {
    println!("weft-proxy: not yet");
}
