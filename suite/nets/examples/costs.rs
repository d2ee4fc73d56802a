//! Prints parameters and multiply-adds of every named model: `cargo run -p nets --example costs`.
fn main() -> Result<(), nets::Error> {
    for spec in nets::all_models() {
        let model = nets::Model::new(spec, 0, &candle_core::Device::Cpu)?;
        let cost = model.cost();
        println!(
            "{:<16} {:>12} params {:>8.4} GMACs",
            spec.to_string(),
            cost.params,
            cost.flops as f64 / 1e9
        );
    }
    Ok(())
}
