"""`sam2long-stream train`: train or fine-tune a SAM 2-architecture model with sam2's own
training code (imported from the `training` package that ships in the sam2 wheel)."""
