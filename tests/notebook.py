"""The course notebook's printed parameter counts (3 classes, 96 px), the oracle of the course reproduction."""

NOTEBOOK_RESNEXT_PARAMS = {32: 1_183_683, 64: 2_174_915}
NOTEBOOK_RESNET18_PARAMS = 11_178_051
