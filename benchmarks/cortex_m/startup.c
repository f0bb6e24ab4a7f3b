/* startup.c: the smallest start-up a Cortex-M4 on QEMU's mps2-an386 needs, written for this benchmark.
 *
 * The vector table sits at 0x0 (SSRAM1, where the linker script puts .vectors first): the initial
 * stack pointer, then the handlers. Reset copies .data from its load address to RAM, zeroes .bss,
 * turns on the FPU (CP10 and CP11 full access in CPACR) before any float instruction, opens the
 * semihosting streams and runs main; exit() ends QEMU through semihosting. A fault also ends QEMU
 * (semihosting SYS_EXIT with a run-time error) instead of hanging it.
 */
#include <stdint.h>
#include <stdlib.h>

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _estack;
extern int main(void);
extern void initialise_monitor_handles(void);

void Reset_Handler(void);
void Fault_Handler(void);

/* newlib's exit() calls _fini (crtn.o is not linked with -nostartfiles); nothing to finalize */
void _init(void) {}
void _fini(void) {}

void Fault_Handler(void)
{
    /* SYS_EXIT (0x18) with ADP_Stopped_RunTimeError (0x20023) */
    __asm__ volatile("mov r0, #0x18\n\tldr r1, =0x20023\n\tbkpt 0xab" ::: "r0", "r1", "memory");
    for (;;) {
    }
}

__attribute__((section(".vectors"), used)) static void (*const vectors[16])(void) = {
    (void (*)(void))(uintptr_t)&_estack, /* initial stack pointer */
    Reset_Handler,
    Fault_Handler, /* NMI */
    Fault_Handler, /* HardFault */
    Fault_Handler, /* MemManage */
    Fault_Handler, /* BusFault */
    Fault_Handler, /* UsageFault */
    0, 0, 0, 0,
    Fault_Handler, /* SVCall */
    Fault_Handler, /* DebugMonitor */
    0,
    Fault_Handler, /* PendSV */
    Fault_Handler, /* SysTick */
};

void Reset_Handler(void)
{
    volatile uint32_t *const cpacr = (volatile uint32_t *)0xE000ED88u;
    uint32_t *src = &_sidata, *dst = &_sdata;
    while (dst < &_edata) {
        *dst++ = *src++;
    }
    for (dst = &_sbss; dst < &_ebss; ++dst) {
        *dst = 0u;
    }
    *cpacr |= 0xFu << 20;
    __asm__ volatile("dsb\n\tisb" ::: "memory");
    initialise_monitor_handles();
    exit(main());
}
