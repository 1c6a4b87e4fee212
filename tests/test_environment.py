from ift.environment import _cpuinfo, cpu, differences, fingerprint


def test_cpuinfo_reads_the_first_processor(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Xeon\nflags\t\t: fpu avx2 amx_bf16\n\n"
                    "processor\t: 1\nvendor_id\t: Other\n")
    assert _cpuinfo(info) == {"processor": "0", "vendor_id": "GenuineIntel", "model name": "Xeon",
                              "flags": "fpu avx2 amx_bf16"}
    assert _cpuinfo(tmp_path / "missing") == {}


def test_cpu_keeps_the_kernel_selecting_flags_of_x86_and_arm(tmp_path):
    x86, arm = tmp_path / "x86", tmp_path / "arm"
    x86.write_text("vendor_id\t: AuthenticAMD\nmodel name\t: EPYC\nflags\t: fpu sse avx2 fma avx512f avx512_bf16\n")
    arm.write_text("CPU implementer\t: 0x41\nCPU part\t: 0xd0c\nFeatures\t: fp asimd sve bf16\n")
    assert cpu(x86)["features"] == ["avx512_bf16", "avx512f", "avx2", "fma"]
    assert (cpu(x86)["vendor"], cpu(x86)["model"]) == ("AuthenticAMD", "EPYC")
    assert cpu(arm)["features"] == ["asimd", "bf16", "sve"] and cpu(arm)["vendor"] == "0x41"


def test_fingerprint_records_kernel_settings_and_threads(monkeypatch):
    import torch

    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    plain = fingerprint("float32")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    limited = fingerprint("float32")
    assert limited["settings"]["ONEDNN_MAX_CPU_ISA"] == "AVX2"
    assert differences(plain, limited) == ["settings.ONEDNN_MAX_CPU_ISA: None -> AVX2"]
    assert plain["threads"] == torch.get_num_threads() and plain["dtype"] == "float32"
    assert plain["packages"]["torch"].startswith(torch.__version__.split("+")[0])
    assert plain["cpu"] == cpu()


def test_differences_are_dotted_and_empty_for_equal_records():
    record = {"cpu": {"model": "A", "features": ["avx2"]}, "threads": 2}
    assert differences(record, record) == []
    assert differences(record, {"cpu": {"model": "B", "features": ["avx2"]}, "threads": 2}) == ["cpu.model: A -> B"]
