/* main.c: run the exported model on the embedded test images; print each image's logits as the
 * hexadecimal bits of the float32 values (exact, and no float printf needed) over semihosting,
 * and the SysTick ticks each inference took. Under QEMU with -icount the virtual clock advances a
 * fixed time per instruction, so ticks count instructions; a calibration loop of known length
 * (two instructions per iteration) gives the instructions per tick. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "albsnn_model.h"
#include "images.h"

#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)

/* SysTick counts down from 2^24 - 1; ticks between two readings of at most one wrap */
static uint32_t ticks_since(uint32_t before) { return (before - SYST_CVR) & 0x00FFFFFFu; }

static uint32_t calibrate(uint32_t iterations)
{
    const uint32_t before = SYST_CVR;
    __asm__ volatile("1: subs %0, %0, #1\n\tbne 1b" : "+r"(iterations) : : "cc");
    return ticks_since(before);
}

int main(void)
{
    static float pixels[ALBSNN_INPUT_C * ALBSNN_INPUT_H * ALBSNN_INPUT_W];
    float logits[ALBSNN_NUM_CLASSES];
    uint32_t image, i, before, ticks;
    int status;
    SYST_RVR = 0x00FFFFFFu;
    SYST_CVR = 0u;
    SYST_CSR = 5u; /* enable, processor clock, no interrupt */
    printf("calibration %lu instructions %lu ticks\n", 2ul * 1000000ul, (unsigned long)calibrate(1000000u));
    for (image = 0; image < BENCH_IMAGES; ++image) {
        for (i = 0; i < BENCH_PIXELS; ++i) {
            pixels[i] = (float)bench_pixels[image][i] / 255.0f; /* as ImageSet.as_float computes it */
        }
        before = SYST_CVR;
        status = albsnn_infer(pixels, logits);
        ticks = ticks_since(before);
        if (status != ALBSNN_OK) {
            printf("error %lu status %d\n", (unsigned long)image, status);
            return 1;
        }
        printf("ticks %lu %lu\n", (unsigned long)image, (unsigned long)ticks);
        printf("logits %lu", (unsigned long)image);
        for (i = 0; i < ALBSNN_NUM_CLASSES; ++i) {
            uint32_t bits;
            memcpy(&bits, &logits[i], sizeof bits);
            printf(" %08lx", (unsigned long)bits);
        }
        printf("\n");
    }
    printf("done %lu\n", (unsigned long)BENCH_IMAGES);
    return 0;
}
