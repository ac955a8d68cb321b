"""Evaluation: clustering metrics, day reports, the synthetic data generator, the demo data, calibration."""
