/*
 * Minimal stand-in for Windows' bcryptprimitives.dll, for running Rust
 * programs under Wine versions that lack it (Wine 8.0 in Debian 12).
 *
 * Rust's std (1.78+) imports ProcessPrng from bcryptprimitives.dll to seed
 * HashMap's RandomState and for other randomness.  Here it is implemented
 * with RtlGenRandom (advapi32!SystemFunction036), which Wine does provide.
 *
 * Built and installed into the Wine prefix by .ci/windows-setup.sh:
 *   x86_64-w64-mingw32-gcc -shared -O2 -s -Wl,--no-insert-timestamp,--disable-auto-image-base \
 *     -o bcryptprimitives.dll bcryptprimitives.c bcryptprimitives.def -ladvapi32
 */
#include <windows.h>

/* RtlGenRandom; the import library exports it under this name. */
BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG chunk = len > 0x40000000u ? 0x40000000u : (ULONG)len;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}

BOOL WINAPI DllMain(HINSTANCE inst, DWORD reason, LPVOID reserved)
{
    (void)inst;
    (void)reason;
    (void)reserved;
    return TRUE;
}
