"""convbench: VGG, ResNet and ResNeXt trained from scratch and compared, as a DVC + MLflow pipeline."""
