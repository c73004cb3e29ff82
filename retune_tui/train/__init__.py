"""Training: LoRA adapters (or whole small models) with peft and the transformers Trainer."""
