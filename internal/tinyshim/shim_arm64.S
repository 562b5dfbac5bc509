// The tiny exec shim for linux/arm64: a complete static ELF executable,
// header included, with no libc and no runtime. hack/tinyshim.sh assembles
// it into image_arm64.go. The protocol is shim_amd64.S's, word for word:
//
// argv: hotswap-exec-shim M PATH ARG0 [ARG...]
//   M     the first descriptor the server must not inherit: M is this shim's
//         own memfd and, when PATH is empty, M+1 is the open file to run.
//   PATH  the program to execve; empty: execveat(M+1, "", AT_EMPTY_PATH),
//         or execve("/proc/self/fd/M+1") where execveat is refused.
//   ARG0 [ARG...]  the server's argv.
// envp: an entry exactly "LISTEN_PID=XXXXXXXXXX" is overwritten in place
// with this process's PID (which the server keeps after execve).
//
// On failure it writes one line to stderr and exits like a shell: 127 when
// PATH does not exist, 126 when it cannot be executed, 2 on bad usage.

        .set    BASE, 0x400000

        .set    SYS_fcntl, 25
        .set    SYS_write, 64
        .set    SYS_exit_group, 94
        .set    SYS_getpid, 172
        .set    SYS_execve, 221
        .set    SYS_execveat, 281
        .set    F_SETFD, 2
        .set    FD_CLOEXEC, 1
        .set    AT_EMPTY_PATH, 0x1000
        .set    EPERM, 1
        .set    ENOENT, 2
        .set    ENOTDIR, 20
        .set    ENOSYS, 38
        .set    procfd_len, 14

ehdr:
        .byte   0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0  // 64-bit, little endian, SysV
        .quad   0
        .hword  2                                   // ET_EXEC
        .hword  0xb7                                // EM_AARCH64
        .word   1
        .quad   BASE + _start - ehdr                // e_entry
        .quad   phdr - ehdr                         // e_phoff
        .quad   0                                   // e_shoff: no sections
        .word   0
        .hword  64                                  // e_ehsize
        .hword  56                                  // e_phentsize
        .hword  2                                   // e_phnum
        .hword  0, 0, 0
phdr:
        .word   1                                   // PT_LOAD
        .word   5                                   // R+X
        .quad   0
        .quad   BASE
        .quad   BASE
        .quad   end - ehdr
        .quad   end - ehdr
        .quad   0x10000                             // 64 KiB pages too
        .word   0x6474e551                          // PT_GNU_STACK: not executable
        .word   6                                   // R+W
        .quad   0, 0, 0, 0, 0
        .quad   16

_start:
        ldr     x19, [sp]                   // argc
        add     x20, sp, #8                 // argv
        add     x21, x20, x19, lsl #3
        add     x21, x21, #8                // envp
        cmp     x19, #4
        b.lo    usage

        // M: a decimal of at least 3 (0-2 are the server's stdio).
        ldr     x1, [x20, #8]
        mov     x0, #0
        mov     x3, #10
        mov     x4, #0x7fffffff
        ldrb    w2, [x1]
        cbz     w2, baddesc
1:      ldrb    w2, [x1], #1
        cbz     w2, 2f
        sub     w2, w2, #0x30
        cmp     w2, #9
        b.hi    baddesc
        madd    x0, x0, x3, x2
        cmp     x0, x4
        b.hi    baddesc
        b       1b
2:      cmp     x0, #3
        b.lo    baddesc
        mov     x22, x0

        // Neither this shim's memfd nor the file to run reaches the server.
        mov     x0, x22
        bl      cloexec
        add     x0, x22, #1
        bl      cloexec

        // LISTEN_PID: only this process knows its PID, and keeps it after execve.
        mov     x24, x21
3:      ldr     x25, [x24], #8
        cbz     x25, 5f
        adr     x1, placeholder
        mov     x2, x25
4:      ldrb    w3, [x1], #1
        ldrb    w4, [x2], #1
        cmp     w3, w4
        b.ne    3b
        cbnz    w3, 4b                      // equal up to the placeholder's NUL
        mov     x8, #SYS_getpid
        svc     #0
        add     x1, x25, #11                // after "LISTEN_PID="
        bl      utoa
        strb    wzr, [x1]
5:
        ldr     x0, [x20, #16]              // PATH
        ldrb    w1, [x0]
        cbz     w1, byfd
        add     x1, x20, #24                // the server's argv
        mov     x2, x21
        mov     x8, #SYS_execve
        svc     #0
        mov     x23, x0                     // -errno
        adr     x0, msg_exec
        bl      puts
        ldr     x0, [x20, #16]
        bl      puts
        bl      errline
        mov     x0, #126
        cmn     x23, #ENOENT
        b.eq    8f
        cmn     x23, #ENOTDIR
        b.ne    exit
8:      mov     x0, #127
        b       exit

byfd:
        add     x0, x22, #1
        adr     x1, empty
        add     x2, x20, #24
        mov     x3, x21
        mov     x4, #AT_EMPTY_PATH
        mov     x8, #SYS_execveat
        svc     #0
        // ENOSYS: a kernel before 3.19; EPERM: a seccomp profile that knows
        // execve but not execveat. /proc/self/fd/M+1 names the same file.
        cmn     x0, #ENOSYS
        b.eq    6f
        cmn     x0, #EPERM
        b.ne    7f
6:      sub     sp, sp, #64
        mov     x1, sp
        adr     x2, procfd
        mov     x3, #procfd_len
61:     ldrb    w4, [x2], #1
        strb    w4, [x1], #1
        subs    x3, x3, #1
        b.ne    61b
        add     x0, x22, #1
        bl      utoa
        strb    wzr, [x1]
        mov     x0, sp
        add     x1, x20, #24
        mov     x2, x21
        mov     x8, #SYS_execve
        svc     #0
7:      mov     x23, x0
        adr     x0, msg_exec
        bl      puts
        ldr     x0, [x20, #24]              // ARG0
        bl      puts
        adr     x0, msg_desc
        bl      puts
        add     x0, x22, #1
        bl      putu
        adr     x0, msg_close
        bl      puts
        bl      errline
        mov     x0, #126
        b       exit

usage:
        adr     x0, msg_usage
        bl      puts
        mov     x0, #2
        b       exit

baddesc:
        adr     x0, msg_prefix
        bl      puts
        ldr     x0, [x20, #8]
        bl      puts
        adr     x0, msg_baddesc
        bl      puts
        mov     x0, #126
exit:
        mov     x8, #SYS_exit_group
        svc     #0
        b       exit

// cloexec(x0=fd): fcntl(fd, F_SETFD, FD_CLOEXEC); a closed fd is fine.
cloexec:
        mov     x1, #F_SETFD
        mov     x2, #FD_CLOEXEC
        mov     x8, #SYS_fcntl
        svc     #0
        ret

// utoa(x0=n, x1=dst): writes n in decimal at dst; x1 ends after it.
// Clobbers x0, x9-x13.
utoa:
        sub     sp, sp, #32
        add     x9, sp, #32                 // digits, backwards, below x9
        mov     x10, x9
        mov     x11, #10
1:      udiv    x12, x0, x11
        msub    x13, x12, x11, x0
        add     w13, w13, #0x30
        strb    w13, [x10, #-1]!
        mov     x0, x12
        cbnz    x0, 1b
2:      ldrb    w13, [x10], #1
        strb    w13, [x1], #1
        cmp     x10, x9
        b.ne    2b
        add     sp, sp, #32
        ret

// puts(x0=NUL-terminated string): writes it to stderr. Clobbers x0-x3, x8.
puts:
        mov     x1, x0
        mov     x2, x0
1:      ldrb    w3, [x2]
        cbz     w3, 2f
        add     x2, x2, #1
        b       1b
2:      sub     x2, x2, x1
        mov     x0, #2
        mov     x8, #SYS_write
        svc     #0
        ret

// putu(x0=n): writes n in decimal to stderr.
putu:
        str     x30, [sp, #-48]!
        add     x1, sp, #16
        bl      utoa
        strb    wzr, [x1]
        add     x0, sp, #16
        bl      puts
        ldr     x30, [sp], #48
        ret

// errline(x23=-errno): writes ": <strerror as Go says it>\n".
errline:
        str     x30, [sp, #-16]!
        adr     x0, msg_colon
        bl      puts
        neg     x4, x23
        adr     x5, errtab
1:      ldrb    w6, [x5]
        cbz     w6, 3f                      // not in the table: "errno N"
        add     x5, x5, #1
        cmp     x6, x4
        b.eq    4f
2:      ldrb    w6, [x5], #1                // skip this entry's text
        cbnz    w6, 2b
        b       1b
3:      adr     x0, msg_errno
        bl      puts
        mov     x0, x4
        bl      putu
        b       5f
4:      mov     x0, x5
        bl      puts
5:      adr     x0, msg_nl
        bl      puts
        ldr     x30, [sp], #16
        ret

placeholder:    .ascii "LISTEN_PID=XXXXXXXXXX\0"
procfd:         .ascii "/proc/self/fd/"             // procfd_len bytes
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
// The errors execve reports, worded as Go's syscall.Errno.Error().
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
