"""Labels beyond the human ones: calibrated teacher labels, label quality, active learning."""
