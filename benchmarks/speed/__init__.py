"""Speed and memory benchmarks: each times one part of the project against its reference, side by side."""
