//! `--device cpu|cuda|metal|auto`.
use anyhow::{Context, Result};
use candle_core::Device;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceChoice {
    Cpu,
    Cuda,
    Metal,
    /// CUDA if compiled in and present, else Metal, else CPU.
    Auto,
}

pub fn select(choice: DeviceChoice) -> Result<Device> {
    match choice {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Cuda => {
            Device::new_cuda(0).context("--device cuda: build with `--features cuda` on a machine with an NVIDIA GPU")
        }
        DeviceChoice::Metal => Device::new_metal(0).context("--device metal: build with `--features metal` on a Mac"),
        DeviceChoice::Auto => {
            if candle_core::utils::cuda_is_available() {
                Ok(Device::new_cuda(0)?)
            } else if candle_core::utils::metal_is_available() {
                Ok(Device::new_metal(0)?)
            } else {
                Ok(Device::Cpu)
            }
        }
    }
}
