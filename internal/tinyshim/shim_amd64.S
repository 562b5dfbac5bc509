# The tiny exec shim for linux/amd64: a complete static ELF executable,
# header included, with no libc and no runtime. hack/tinyshim.sh assembles
# it into shim_amd64.bin; image_amd64.go embeds that file. It runs from a
# sealed memfd that hotswap passes to each generation (package doc).
#
# argv: hotswap-exec-shim M PATH ARG0 [ARG...]
#   M     the first descriptor the server must not inherit: M is this shim's
#         own memfd and, when PATH is empty, M+1 is the open file to run.
#   PATH  the program to execve; empty: execveat(M+1, "", AT_EMPTY_PATH),
#         or execve("/proc/self/fd/M+1") where execveat is refused.
#   ARG0 [ARG...]  the server's argv.
# envp: an entry exactly "LISTEN_PID=XXXXXXXXXX" is overwritten in place
# with this process's PID (which the server keeps after execve).
#
# On failure it writes one line to stderr and exits like a shell: 127 when
# PATH does not exist, 126 when it cannot be executed, 2 on bad usage.

        .intel_syntax noprefix
        .set    BASE, 0x400000

        .set    SYS_write, 1
        .set    SYS_getpid, 39
        .set    SYS_execve, 59
        .set    SYS_fcntl, 72
        .set    SYS_exit_group, 231
        .set    SYS_execveat, 322
        .set    F_SETFD, 2
        .set    FD_CLOEXEC, 1
        .set    AT_EMPTY_PATH, 0x1000
        .set    EPERM, 1
        .set    ENOENT, 2
        .set    ENOTDIR, 20
        .set    ENOSYS, 38
        .set    placeholder_len, 22
        .set    procfd_len, 14

ehdr:
        .byte   0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0     # 64-bit, little endian, SysV
        .quad   0
        .word   2                                   # ET_EXEC
        .word   0x3e                                # EM_X86_64
        .long   1
        .quad   BASE + _start - ehdr                # e_entry
        .quad   phdr - ehdr                         # e_phoff
        .quad   0                                   # e_shoff: no sections
        .long   0
        .word   64                                  # e_ehsize
        .word   56                                  # e_phentsize
        .word   2                                   # e_phnum
        .word   0, 0, 0
phdr:
        .long   1                                   # PT_LOAD
        .long   5                                   # R+X
        .quad   0
        .quad   BASE
        .quad   BASE
        .quad   end - ehdr
        .quad   end - ehdr
        .quad   0x1000
        .long   0x6474e551                          # PT_GNU_STACK: not executable
        .long   6                                   # R+W
        .quad   0, 0, 0, 0, 0
        .quad   16

_start:
        mov     r12, [rsp]                  # argc
        lea     r13, [rsp+8]                # argv
        lea     r14, [r13+r12*8+8]          # envp
        cmp     r12, 4
        jb      usage

        # M: a decimal of at least 3 (0-2 are the server's stdio).
        mov     rsi, [r13+8]
        xor     eax, eax
        movzx   ecx, byte ptr [rsi]
        test    ecx, ecx
        jz      baddesc
1:      movzx   ecx, byte ptr [rsi]
        test    ecx, ecx
        jz      2f
        sub     ecx, 0x30
        cmp     ecx, 9
        ja      baddesc
        imul    rax, rax, 10
        add     rax, rcx
        cmp     rax, 0x7fffffff
        ja      baddesc
        inc     rsi
        jmp     1b
2:      cmp     rax, 3
        jb      baddesc
        mov     r15, rax

        # Neither this shim's memfd nor the file to run reaches the server.
        mov     rdi, r15
        call    cloexec
        lea     rdi, [r15+1]
        call    cloexec

        # LISTEN_PID: only this process knows its PID, and keeps it after execve.
        mov     rbx, r14
3:      mov     rdi, [rbx]
        test    rdi, rdi
        jz      5f
        add     rbx, 8
        mov     r8, rdi
        lea     rsi, [rip+placeholder]
        mov     ecx, placeholder_len
        repe cmpsb
        jne     3b
        mov     eax, SYS_getpid
        syscall
        lea     rdi, [r8+11]                # after "LISTEN_PID="
        call    utoa
        mov     byte ptr [rdi], 0
5:
        mov     rdi, [r13+16]               # PATH
        lea     rsi, [r13+24]               # the server's argv
        mov     rdx, r14
        cmp     byte ptr [rdi], 0
        je      byfd
        mov     eax, SYS_execve
        syscall
        mov     rbx, rax                    # -errno
        lea     rsi, [rip+msg_exec]
        call    puts
        mov     rsi, [r13+16]
        call    puts
        call    errline
        mov     edi, 126
        mov     eax, 127
        cmp     rbx, -ENOENT
        cmove   edi, eax
        cmp     rbx, -ENOTDIR
        cmove   edi, eax
        jmp     exit

byfd:
        lea     rdi, [r15+1]
        lea     rsi, [rip+empty]
        lea     rdx, [r13+24]
        mov     r10, r14
        mov     r8d, AT_EMPTY_PATH
        mov     eax, SYS_execveat
        syscall
        # ENOSYS: a kernel before 3.19; EPERM: a seccomp profile that knows
        # execve but not execveat. /proc/self/fd/M+1 names the same file.
        cmp     rax, -ENOSYS
        je      6f
        cmp     rax, -EPERM
        jne     7f
6:      sub     rsp, 64
        mov     rdi, rsp
        lea     rsi, [rip+procfd]
        mov     ecx, procfd_len
        rep movsb
        lea     rax, [r15+1]
        call    utoa
        mov     byte ptr [rdi], 0
        mov     rdi, rsp
        lea     rsi, [r13+24]
        mov     rdx, r14
        mov     eax, SYS_execve
        syscall
7:      mov     rbx, rax
        lea     rsi, [rip+msg_exec]
        call    puts
        mov     rsi, [r13+24]               # ARG0
        call    puts
        lea     rsi, [rip+msg_desc]
        call    puts
        lea     rax, [r15+1]
        call    putu
        lea     rsi, [rip+msg_close]
        call    puts
        call    errline
        mov     edi, 126
        jmp     exit

usage:
        lea     rsi, [rip+msg_usage]
        call    puts
        mov     edi, 2
        jmp     exit

baddesc:
        lea     rsi, [rip+msg_prefix]
        call    puts
        mov     rsi, [r13+8]
        call    puts
        lea     rsi, [rip+msg_baddesc]
        call    puts
        mov     edi, 126
exit:
        mov     eax, SYS_exit_group
        syscall
        hlt

# cloexec(rdi=fd): fcntl(fd, F_SETFD, FD_CLOEXEC); a closed fd is fine.
cloexec:
        mov     esi, F_SETFD
        mov     edx, FD_CLOEXEC
        mov     eax, SYS_fcntl
        syscall
        ret

# utoa(rax=n, rdi=dst): writes n in decimal at dst; rdi ends after it.
utoa:
        lea     r9, [rsp-8]                 # red zone: digits, backwards
        mov     rsi, r9
        mov     ecx, 10
1:      xor     edx, edx
        div     rcx
        add     dl, 0x30
        dec     rsi
        mov     [rsi], dl
        test    rax, rax
        jnz     1b
2:      mov     dl, [rsi]
        mov     [rdi], dl
        inc     rdi
        inc     rsi
        cmp     rsi, r9
        jne     2b
        ret

# puts(rsi=NUL-terminated string): writes it to stderr.
puts:
        mov     rdx, rsi
1:      cmp     byte ptr [rdx], 0
        je      2f
        inc     rdx
        jmp     1b
2:      sub     rdx, rsi
        mov     edi, 2
        mov     eax, SYS_write
        syscall
        ret

# putu(rax=n): writes n in decimal to stderr.
putu:
        sub     rsp, 40
        mov     rdi, rsp
        call    utoa
        mov     byte ptr [rdi], 0
        mov     rsi, rsp
        call    puts
        add     rsp, 40
        ret

# errline(rbx=-errno): writes ": <strerror as Go says it>\n".
errline:
        lea     rsi, [rip+msg_colon]
        call    puts
        mov     rax, rbx
        neg     rax
        lea     rsi, [rip+errtab]
1:      movzx   ecx, byte ptr [rsi]
        test    ecx, ecx
        jz      3f                          # not in the table: "errno N"
        inc     rsi
        cmp     rcx, rax
        je      4f
2:      cmp     byte ptr [rsi], 0           # skip this entry's text
        lea     rsi, [rsi+1]
        jne     2b
        jmp     1b
3:      push    rax
        lea     rsi, [rip+msg_errno]
        call    puts
        pop     rax
        call    putu
        jmp     5f
4:      call    puts
5:      lea     rsi, [rip+msg_nl]
        jmp     puts

placeholder:    .ascii "LISTEN_PID=XXXXXXXXXX\0"    # placeholder_len bytes
procfd:         .ascii "/proc/self/fd/"             # procfd_len bytes
msg_prefix:     .asciz "hotswap-exec-shim: "
msg_exec:       .asciz "hotswap-exec-shim: exec "
msg_desc:       .asciz " (descriptor "
msg_close:      .asciz ")"
msg_colon:      .asciz ": "
msg_errno:      .asciz "errno "
msg_nl:         .asciz "\n"
empty:          .byte 0
msg_baddesc:    .asciz ": not a descriptor hotswap passes\n"
msg_usage:      .asciz "hotswap-exec-shim: usage: hotswap-exec-shim M PATH ARG0 [ARG...] (started by hotswap; not meant to be run by hand)\n"
# The errors execve reports, worded as Go's syscall.Errno.Error().
errtab:
        .byte 1
        .asciz "operation not permitted"
        .byte 2
        .asciz "no such file or directory"
        .byte 7
        .asciz "argument list too long"
        .byte 8
        .asciz "exec format error"
        .byte 9
        .asciz "bad file descriptor"
        .byte 12
        .asciz "cannot allocate memory"
        .byte 13
        .asciz "permission denied"
        .byte 14
        .asciz "bad address"
        .byte 20
        .asciz "not a directory"
        .byte 21
        .asciz "is a directory"
        .byte 22
        .asciz "invalid argument"
        .byte 26
        .asciz "text file busy"
        .byte 36
        .asciz "file name too long"
        .byte 38
        .asciz "function not implemented"
        .byte 40
        .asciz "too many levels of symbolic links"
        .byte 0
end:
