"""Release ZIPs in storage (`projects/<p>/releases/<zip>`) and their extraction to `training_data/`."""
