"""Energy measurement: meters (NVML, RAPL, codecarbon) behind one small interface."""
