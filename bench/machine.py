"""What the benchmarks record about the machine they ran on: the processor and the load average."""
import os, platform
from pathlib import Path

def cpu_model()->str:
    "The processor's model name (from /proc/cpuinfo where there is one)."
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'): return line.split(':', 1)[1].strip()
    except OSError: pass
    return platform.processor() or 'unknown CPU'

def load_average()->float:
    "The 1-minute load average (NaN where the system has none)."
    try: return os.getloadavg()[0]
    except OSError: return float('nan')
