"""Editor backends (engine/backends/): one module each behind one small interface."""
