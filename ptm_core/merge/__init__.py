"""The merge engine: MergeKit-compatible recipes, pure tensor math, streaming export."""
