"""Modal screens: help, a path prompt, the model picker."""
