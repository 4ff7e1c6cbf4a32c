"""The project's benchmarks and studies: benchmarks/README.md is the map."""
